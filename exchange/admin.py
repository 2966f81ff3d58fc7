from django.contrib import admin

from audit.admin import ReadOnlyModelAdmin
from exchange.models import ExportLog


@admin.register(ExportLog)
class ExportLogAdmin(ReadOnlyModelAdmin):
    """The export log is a record, not a document to edit."""

    list_display = ("at", "username", "level", "shape", "reason", "completed_at")
    list_filter = ("level", "shape", "via")
    search_fields = ("username", "reason")

    def get_queryset(self, request):  # type: ignore[no-untyped-def]
        return super().get_queryset(request).visible_to(request.user)
