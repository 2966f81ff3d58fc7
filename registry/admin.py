from django.contrib import admin
from django.http import HttpRequest


class RegistryAdminSite(admin.AdminSite):
    """The Django admin, open to registry admins by role (no is_staff flag to remember)."""

    site_header = "Sacroplasty registry administration"
    site_title = "PSP registry admin"

    def has_permission(self, request: HttpRequest) -> bool:
        user = request.user
        return bool(user.is_active and (user.is_superuser or getattr(user, "role", None) == "admin"))
