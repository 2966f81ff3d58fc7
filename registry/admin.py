from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _


class RegistryAdminSite(admin.AdminSite):
    """The Django admin, open to registry admins by role (no is_staff flag to remember)."""

    site_header = _("Sacroplasty registry administration")
    site_title = _("PSP registry admin")
    index_title = _("Registry administration")

    def has_permission(self, request: HttpRequest) -> bool:
        user = request.user
        return bool(user.is_active and (user.is_superuser or getattr(user, "role", None) == "admin"))
