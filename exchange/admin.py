from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from exchange.models import ExportLog


@admin.register(ExportLog)
class ExportLogAdmin(admin.ModelAdmin):
    """Read-only: the export log is a record, not a document to edit."""

    list_display = ("at", "username", "level", "shape", "reason", "completed_at")
    list_filter = ("level", "shape", "via")
    search_fields = ("username", "reason")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
