from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class ExportLogQuerySet(models.QuerySet["ExportLog"]):
    def visible_to(self, user: Any) -> "ExportLogQuerySet":
        """The exports an admin oversees: all for a study-wide admin; for a site admin, those that could
        hold her sites' data (by a user of one of her sites, by a study-wide user, or by a command)."""
        if user.sees_all_sites:
            return self
        return self.filter(
            Q(user__isnull=True)
            | Q(user__study_wide=True)
            | Q(user__is_superuser=True)
            | Q(user__sites__in=user.sites.all())
        ).distinct()


class ExportLog(models.Model):
    """Who exported what, when and why. Written when an export starts; the row
    counts are filled in when its last file has streamed (`completed_at`)."""

    class Level(models.TextChoices):
        DEIDENTIFIED = "deidentified", _("De-identified (limited data set: day offsets)")
        IDENTIFIED = "identified", _("Identified (names, MRNs, dates)")

    class Shape(models.TextChoices):
        BOTH = "both", _("Bundle (one file per CRF form) and wide analysis file")
        LONG = "long", _("Bundle only (long: one row per visit, procedure...)")
        WIDE = "wide", _("Wide analysis file only (one row per patient)")

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    username = models.CharField(max_length=150, blank=True)
    level = models.CharField(max_length=20, choices=Level.choices)
    shape = models.CharField(max_length=10, choices=Shape.choices)
    filters = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True)
    row_counts = models.JSONField(default=dict, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    via = models.CharField(max_length=10, default="web", help_text="web or command")

    objects = ExportLogQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = _("export log entry")
        verbose_name_plural = _("export log")

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.username or 'command line'} {self.level}"


class ExportRow(models.Model):
    """One patient's rows of one de-identified export file, as CSV text: derived, never edited.

    Kept by the triggers exchange/export_cache.py installs (PostgreSQL), read by the export instead
    of formatting every cell again. Not on SQLite."""

    derived = True  # kept by triggers, never audited: not a record of the trail's filter

    pk = models.CompositePrimaryKey("file", "patient_id")
    file = models.CharField(max_length=40)
    patient_id = models.BigIntegerField()
    study_id = models.CharField(max_length=32)  # her study ID: the export reads a file in this order
    rows = models.IntegerField()
    body = models.TextField()

    class Meta:
        verbose_name = _("export cache row")
        indexes = [models.Index(fields=["file", "study_id"], name="exportrow_file_order")]

    def __str__(self) -> str:
        return f"{self.file} of patient {self.patient_id}"
