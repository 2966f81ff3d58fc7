"""Study monitoring: queries on a field (with their message thread) and source data verification.

A query points at one value of a case: the record (model label and primary
key) and the field. Its state changes are rows here and entries in the trail.
The case locks (electronic signatures) live in patients.CaseLock, low enough
for every clinical service to read them.
"""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from patients.models import Patient


class DataQuery(models.Model):
    class State(models.TextChoices):
        OPEN = "open", _("Open")
        ANSWERED = "answered", _("Answered")
        CLOSED = "closed", _("Closed")

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="queries")
    record_model = models.CharField(max_length=100, help_text="app_label.ModelName of the queried record")
    record_pk = models.PositiveBigIntegerField()
    record_label = models.CharField(max_length=200, help_text="e.g. '1 month visit', as shown when raised")
    field = models.CharField(max_length=100)
    field_label = models.CharField(max_length=200)
    value_when_raised = models.CharField(max_length=200, blank=True)
    question = models.TextField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN, db_index=True)
    raised_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    raised_at = models.DateTimeField(auto_now_add=True)
    rule_code = models.CharField(max_length=40, blank=True, help_text="The data-quality rule that raised it, if any")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-raised_at", "-id"]
        indexes = [models.Index(fields=["record_model", "record_pk"])]
        constraints = [
            models.UniqueConstraint(
                fields=["rule_code", "record_model", "record_pk", "field"],
                condition=~models.Q(rule_code="") & ~models.Q(state="closed"),
                name="dataquery_one_open_per_rule_and_value",
            )
        ]

    def __str__(self) -> str:
        return f"Query #{self.pk} on {self.patient.study_id} {self.record_label} {self.field_label}"

    @property
    def is_open(self) -> bool:
        return self.state != self.State.CLOSED

    @property
    def field_label_shown(self) -> str:
        """The field's label in the reader's language; field_label keeps the English it was raised with."""
        from django.apps import apps
        from django.core.exceptions import FieldDoesNotExist

        try:
            return str(apps.get_model(self.record_model)._meta.get_field(self.field).verbose_name)
        except (LookupError, ValueError, FieldDoesNotExist):
            return self.field_label


class QueryMessage(models.Model):
    class Kind(models.TextChoices):
        QUESTION = "question", _("Question")
        ANSWER = "answer", _("Answer")
        REOPEN = "reopen", _("Re-opened")
        CLOSE = "close", _("Closed")

    query = models.ForeignKey(DataQuery, on_delete=models.CASCADE, related_name="messages")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    text = models.TextField()
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["query", "at", "id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on query #{self.query_id}"

    @property
    def patient(self) -> Patient:  # for audit.services.owner_keys
        return self.query.patient


class Verification(models.Model):
    """A monitor's source data verification of a whole case, a procedure or a visit."""

    class Scope(models.TextChoices):
        CASE = "case", _("Whole case")
        PROCEDURE = "procedure", _("Procedure")
        VISIT = "visit", _("Visit")

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="verifications")
    scope = models.CharField(max_length=10, choices=Scope.choices)
    record_pk = models.PositiveBigIntegerField(null=True, blank=True)
    record_label = models.CharField(max_length=200)
    verified_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    verified_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["patient", "-verified_at"]

    def __str__(self) -> str:
        return f"{self.patient.study_id} {self.record_label} verified"
