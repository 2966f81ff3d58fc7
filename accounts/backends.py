"""Registry admins get the Django admin's model permissions from their role.

Without this, every admin account would need its permissions ticked by hand;
the role is the one place that says who may manage the registry. Append-only
models (the audit trail) still refuse changes in their ModelAdmin.

Users and sites are the exception: a role admin who is not a superuser may
only view sites and view, add and change users (the user admin then limits
which users and which fields: audit/admin_accounts.py). Deleting users,
editing sites, groups and permissions are for superusers, whom Django grants
everything before any backend is asked.
"""

from typing import Any

from django.contrib.auth.backends import BaseBackend

REGISTRY_APPS = frozenset({"accounts", "patients", "procedures", "outcomes", "audit", "exchange", "axes"})
ACCOUNTS_PERMS = frozenset({"accounts.view_site", "accounts.view_user", "accounts.add_user", "accounts.change_user"})


class RoleBackend(BaseBackend):
    def _is_admin(self, user_obj: Any) -> bool:
        return bool(user_obj.is_active and getattr(user_obj, "role", None) == "admin")

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        if not self._is_admin(user_obj):
            return False
        app_label = perm.split(".", 1)[0]
        if app_label == "accounts":
            return perm in ACCOUNTS_PERMS
        return app_label in REGISTRY_APPS

    def has_module_perms(self, user_obj: Any, app_label: str) -> bool:
        return self._is_admin(user_obj) and app_label in REGISTRY_APPS
