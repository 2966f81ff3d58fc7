"""Patient self-report links and submissions, installed ODI wording, and the message log.

A link is one visit (patient + timepoint). Its tokens are random
(`secrets.token_urlsafe(32)`) and only their SHA-256 is stored: the raw token
exists only in the e-mail or on the bedside page that carries it. Every
e-mail of a link (invitation, reminder) carries a fresh token, so the log of
sent messages never holds a usable link; all tokens of a link work until the
link closes (window closed, submitted or revoked).
"""

import hashlib
import re
import secrets
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from outcomes.models import FollowUp, Medication, Timepoint
from patients.models import Patient
from registry import measures


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


class SelfReportLink(models.Model):
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="selfreport_links")
    timepoint = models.CharField(_("Visit"), max_length=10, choices=Timepoint.choices)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(help_text=_("The end of the visit window's last day"))
    opened_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    revoke_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("self-report link")
        verbose_name_plural = _("self-report links")
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "timepoint"], condition=Q(revoked_at__isnull=True), name="selfreport_one_live_link"
            ),
            models.CheckConstraint(
                condition=Q(revoked_at__isnull=True) | ~Q(revoke_reason=""), name="selfreport_revoke_has_reason"
            ),
        ]

    def __str__(self) -> str:
        return f"link {self.pk} ({self.patient.study_id} {self.timepoint})"

    def new_token(self) -> str:
        """A fresh random token for this link; only its hash is stored. Returns the raw token."""
        raw = secrets.token_urlsafe(32)
        LinkToken.objects.create(link=self, token_hash=hash_token(raw))
        return raw

    def is_usable(self, now: object = None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and self.submitted_at is None and now < self.expires_at  # type: ignore[operator]

    @property
    def visit_name(self) -> str:
        # "1 month (21-45 days)" -> "1 month", in the active language (Chinese may use full-width brackets)
        return re.split(r"\s*[(（]", str(Timepoint(self.timepoint).label), maxsplit=1)[0]


class LinkToken(models.Model):
    link = models.ForeignKey(SelfReportLink, on_delete=models.CASCADE, related_name="tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"token of link {self.link_id}"


class SelfReport(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting for review")
        ACCEPTED = "accepted", _("Accepted")
        REJECTED = "rejected", _("Rejected")

    # One submission per link: the database refuses a second.
    link = models.OneToOneField(SelfReportLink, on_delete=models.CASCADE, related_name="report")
    submitted_at = models.DateTimeField(default=timezone.now)
    vas = models.DecimalField(
        _("Pain (0-10)"),
        max_digits=3,
        decimal_places=1,
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(10))],
    )
    odi_q1 = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(5)])
    odi_q2 = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(5)])
    odi_q3 = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(5)])
    odi_q4 = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(5)])
    odi_q5 = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(5)])
    odi_q6 = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(5)])
    odi_q7 = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(5)])
    odi_q8 = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(5)])
    odi_q9 = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(5)])
    odi_q10 = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(5)])
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_reason = models.TextField(blank=True)
    followup = models.OneToOneField(
        FollowUp, null=True, blank=True, on_delete=models.SET_NULL, related_name="selfreport"
    )

    class Meta:
        ordering = ["submitted_at"]
        constraints = [
            models.CheckConstraint(condition=Q(vas__gte=0, vas__lte=10), name="selfreport_vas_0_10"),
            *[
                models.CheckConstraint(
                    condition=Q(**{f"odi_q{i}__isnull": True}) | Q(**{f"odi_q{i}__lte": 5}),
                    name=f"selfreport_odi_q{i}_0_5",
                )
                for i in range(1, 11)
            ],
        ]

    def __str__(self) -> str:
        return f"self-report via link {self.link_id}"

    @property
    def odi_answers(self) -> list[int | None]:
        return [getattr(self, f"odi_q{i}") for i in range(1, 11)]


class SelfReportMedication(models.Model):
    report = models.ForeignKey(SelfReport, on_delete=models.CASCADE, related_name="medications")
    drug = models.CharField(max_length=20, choices=Medication.Drug.choices)
    daily_dose = models.DecimalField(max_digits=10, decimal_places=3, validators=[MinValueValidator(Decimal(0))])

    class Meta:
        ordering = ["id"]
        constraints = [models.CheckConstraint(condition=Q(daily_dose__gte=0), name="selfreport_dose_not_negative")]

    def __str__(self) -> str:
        return f"{self.get_drug_display()} {measures.record(self.daily_dose, 'daily_dose', localize=False)}"


class TokenFailure(models.Model):
    """A wrong, expired or used token tried from an address: the rate limit counts these."""

    address = models.GenericIPAddressField()
    at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.address} {self.at:%Y-%m-%d %H:%M}"


class Kind(models.TextChoices):
    INVITATION = "invitation", _("Self-report invitation")
    REMINDER = "reminder", _("Self-report reminder")
    DIGEST = "digest", _("Daily digest of visits due")
    ALERT = "alert", _("Alert: major complication, perioperative death, data removal")
    RECONSENT = "reconsent", _("Weekly note: consents needing re-consent")


STAFF_KINDS = (Kind.DIGEST, Kind.ALERT, Kind.RECONSENT)


class NotificationOptOut(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_optouts")
    kind = models.CharField(max_length=12, choices=Kind.choices)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "kind"], name="optout_once_per_kind")]

    def __str__(self) -> str:
        return f"{self.user_id} opted out of {self.kind}"


class Message(models.Model):
    """One e-mail: who, what kind, when, and whether it was delivered. A failed send is retried."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        SENT = "sent", _("Delivered")
        FAILED = "failed", _("Failed (will retry)")
        GAVE_UP = "gave_up", _("Failed (no more retries)")
        CANCELLED = "cancelled", _("Not sent (no longer needed)")

    key = models.CharField(max_length=200, unique=True, help_text=_("One message per purpose (e.g. digest:USER:DATE)"))
    kind = models.CharField(max_length=12, choices=Kind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="messages_received"
    )
    link = models.ForeignKey(SelfReportLink, null=True, blank=True, on_delete=models.CASCADE, related_name="messages")
    to_address = models.EmailField()
    subject = models.CharField(max_length=200, blank=True)
    body = models.TextField(blank=True, help_text=_("As sent; a patient's link is never stored"))
    context = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("e-mail message")
        verbose_name_plural = _("e-mail messages")

    def __str__(self) -> str:
        return f"{self.kind} to {self.to_address} ({self.status})"


class ScanCursor(models.Model):
    """How far the alert scan has read the audit trail."""

    name = models.CharField(max_length=50, unique=True)
    last_event_id = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} at event {self.last_event_id}"
