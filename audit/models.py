import json
from typing import Any, NamedTuple

from django.apps import apps
from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.utils.translation import gettext_lazy as _


class FieldChange(NamedTuple):
    field: str
    label: str
    old: Any
    new: Any


class AuditEvent(models.Model):
    """One append-only entry of the audit trail (21 CFR 11.10(e)).

    Written only by `audit.services`; on PostgreSQL a trigger (migration 0002)
    refuses UPDATE and DELETE, so not even a bug can rewrite history, and the
    application's database role may only SELECT and INSERT (`grant_app_role`).

    On PostgreSQL a BEFORE INSERT trigger (migration 0003) gives every event,
    whoever writes it (``save()``, ``bulk_create``, raw SQL), its place in the
    chain (`seq`) and `hash` = SHA-256 over the previous event's hash and this
    event's content, so even a database superuser's edit is found by
    ``manage.py verify_trail`` (`audit.chain`). On SQLite (local demo runs) both
    stay empty: nothing is chained there.
    """

    class Action(models.TextChoices):
        CREATE = "create", _("Created")
        UPDATE = "update", _("Changed")
        DELETE = "delete", _("Deleted")
        LOGIN = "login", _("Logged in")
        LOGIN_FAILED = "login_failed", _("Failed log-in")
        LOGOUT = "logout", _("Logged out")
        EXPORT = "export", _("Exported")
        IMPORT = "import", _("Imported")
        VIEW = "view", _("Viewed")
        SEARCH = "search", _("Searched patients")

    at = models.DateTimeField(_("when"), auto_now_add=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("user"),
    )
    username = models.CharField(
        _("user name"), max_length=150, blank=True, help_text=_("Kept as typed, also for failed log-ins")
    )
    action = models.CharField(_("action"), max_length=20, choices=Action.choices)
    model = models.CharField(_("record type"), max_length=100, blank=True, help_text="app_label.ModelName")
    object_pk = models.CharField(_("record id"), max_length=64, blank=True)
    object_repr = models.CharField(_("record"), max_length=200, blank=True)
    study_id = models.CharField(_("study ID"), max_length=32, blank=True, help_text=_("Patient the row belongs to"))
    site_code = models.CharField(_("site"), max_length=10, blank=True)
    changes = models.JSONField(_("changes"), default=dict, blank=True, help_text='{"field": [old, new]}')
    reason = models.TextField(_("reason"), blank=True)
    extra = models.JSONField(_("details"), default=dict, blank=True)
    seq = models.BigIntegerField(
        _("chain position"),
        null=True,
        blank=True,
        unique=True,
        editable=False,
        help_text=_("Position in the hash chain (PostgreSQL)"),
    )
    hash = models.CharField(
        _("hash"),
        max_length=64,
        blank=True,
        editable=False,
        help_text=_("SHA-256 over the previous event's hash and this content"),
    )

    class Meta:
        verbose_name = _("audit event")
        verbose_name_plural = _("audit trail")
        ordering = ["-at", "-id"]
        # Plain b-tree indexes for the trail page's equality filters; no varchar_pattern_ops twins
        # (db_index=True on a CharField adds one for LIKE 'x%', which nothing here runs), and no
        # index on `model` alone: audit_model_object leads with it. Each index is paid on every
        # event written (migration 0007).
        indexes = [
            models.Index(fields=["model", "object_pk"], name="audit_model_object"),
            models.Index(fields=["study_id"], name="audit_study_id"),
            models.Index(fields=["site_code"], name="audit_site_code"),
            models.Index(fields=["action"], name="audit_action"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.username} {self.action} {self.model} {self.object_repr}"

    def field_changes(self) -> list[FieldChange]:
        """One (field, label, old, new) per changed field, labelled with the model's verbose names."""
        try:
            meta = apps.get_model(self.model)._meta if self.model else None
        except (LookupError, ValueError):
            meta = None
        out = []
        for name, pair in self.changes.items():
            old, new = pair if isinstance(pair, list) and len(pair) == 2 else (None, pair)
            try:
                label = str(meta.get_field(name).verbose_name) if meta else name
            except FieldDoesNotExist:
                label = name
            out.append(FieldChange(name, label, _text(old), _text(new)))
        return out


def _text(value: Any) -> Any:
    """Lists and dicts as JSON; everything else as stored (None stays None)."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value
