"""Registry admins get the Django admin's model permissions from their role.

Without this, every admin account would need its permissions ticked by hand;
the role is the one place that says who may manage the registry. Append-only
models (the audit trail) still refuse changes in their ModelAdmin.
"""

from typing import Any

from django.contrib.auth.backends import BaseBackend

REGISTRY_APPS = frozenset({"accounts", "patients", "procedures", "outcomes", "audit", "exchange", "axes"})


class RoleBackend(BaseBackend):
    def _is_admin(self, user: Any) -> bool:
        return bool(user.is_active and getattr(user, "role", None) == "admin")

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        return self._is_admin(user_obj) and perm.split(".", 1)[0] in REGISTRY_APPS

    def has_module_perms(self, user_obj: Any, app_label: str) -> bool:
        return self._is_admin(user_obj) and app_label in REGISTRY_APPS
