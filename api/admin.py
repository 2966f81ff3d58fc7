from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from api.models import ApiToken
from audit.admin import ReadOnlyModelAdmin


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyModelAdmin):
    """Admins see the tokens (never a token itself: only its hash is stored, and not shown); users revoke their own.

    The admin site already admits registry admins only; a site admin sees the tokens of her sites' users.
    """

    list_display = ("prefix", "name", "user", "created_at", "last_used_at", "uses", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("user__username", "name", "prefix")
    exclude = ("key_hash",)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.admin_site.has_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.admin_site.has_permission(request)

    def get_queryset(self, request: HttpRequest) -> Any:
        tokens = super().get_queryset(request).select_related("user")
        user = request.user
        if user.sees_all_sites:  # type: ignore[union-attr]
            return tokens
        return tokens.filter(user__sites__in=user.sites.all()).distinct()  # type: ignore[union-attr]
