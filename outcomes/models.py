from collections.abc import Iterable
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from patients.models import Patient
from registry import scoring
from registry.fields import not_in_future, related_or_none

ODI_SECTION_TITLES = [
    "Pain intensity",
    "Personal care",
    "Lifting",
    "Walking",
    "Sitting",
    "Standing",
    "Sleeping",
    "Sex life",
    "Social life",
    "Travelling",
]
ODI_FIELDS = [f"odi_q{i}" for i in range(1, 11)]


class Timepoint(models.TextChoices):
    BASELINE = "baseline", "Baseline (0-14 days before)"
    POST = "post", "Post-procedure (0-3 days)"
    W1 = "w1", "1 week (5-10 days)"
    M1 = "m1", "1 month (21-45 days)"
    M3 = "m3", "3 months (75-105 days)"
    M6 = "m6", "6 months (150-210 days)"
    M12 = "m12", "12 months (330-400 days)"


def _odi_field(number: int) -> models.PositiveSmallIntegerField:
    return models.PositiveSmallIntegerField(
        f"ODI section {number}: {ODI_SECTION_TITLES[number - 1]}",
        null=True,
        blank=True,
        validators=[MaxValueValidator(5)],
        help_text="Blank = not answered; if two boxes are ticked record the higher",
    )


class FollowUp(models.Model):
    class Status(models.TextChoices):
        COMPLETED = "completed", "Completed"
        MISSED = "missed", "Missed"
        DECEASED = "deceased", "Patient deceased"
        WITHDRAWN = "withdrawn", "Patient withdrawn"
        LOST = "lost", "Lost to follow-up"

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="followups")
    timepoint = models.CharField("Visit", max_length=10, choices=Timepoint.choices)
    visit_date = models.DateField("Visit date", null=True, blank=True, validators=[not_in_future])
    status = models.CharField("Visit status", max_length=10, choices=Status.choices, default=Status.COMPLETED)
    vas = models.DecimalField(
        "Pain, visual analogue scale (0-10)",
        max_digits=3,
        decimal_places=1,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(10))],
        help_text="0 = no pain, 10 = worst pain; one decimal allowed",
    )
    odi_q1 = _odi_field(1)
    odi_q2 = _odi_field(2)
    odi_q3 = _odi_field(3)
    odi_q4 = _odi_field(4)
    odi_q5 = _odi_field(5)
    odi_q6 = _odi_field(6)
    odi_q7 = _odi_field(7)
    odi_q8 = _odi_field(8)
    odi_q9 = _odi_field(9)
    odi_q10 = _odi_field(10)
    odi_score = models.FloatField("Oswestry Disability Index (%)", null=True, blank=True, editable=False)
    opioid_count = models.PositiveSmallIntegerField(
        "Number of opioids prescribed", null=True, blank=True, editable=False
    )
    mme_per_day = models.FloatField(
        "Oral morphine milligram equivalents per day", null=True, blank=True, editable=False
    )
    mme_factor_table = models.CharField(max_length=20, blank=True, editable=False, help_text="Conversion factors used")
    deviation_note = models.TextField("Protocol deviation note", blank=True)
    version = models.PositiveIntegerField(default=1, editable=False)

    class Meta:
        ordering = ["patient", "visit_date", "id"]
        constraints = [
            models.UniqueConstraint(fields=["patient", "timepoint"], name="followup_one_visit_per_timepoint"),
            models.CheckConstraint(
                condition=Q(vas__isnull=True) | Q(vas__gte=0, vas__lte=10), name="followup_vas_0_10"
            ),
            *[
                models.CheckConstraint(
                    condition=Q(**{f"{f}__isnull": True}) | Q(**{f"{f}__lte": 5}), name=f"followup_{f}_0_5"
                )
                for f in ODI_FIELDS
            ],
            models.CheckConstraint(
                condition=~Q(status="completed") | Q(visit_date__isnull=False, vas__isnull=False),
                name="followup_completed_has_date_and_vas",
            ),
            models.CheckConstraint(
                condition=Q(odi_score__isnull=True) | Q(odi_score__gte=0, odi_score__lte=100),
                name="followup_odi_score_0_100",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.patient.study_id} {self.get_timepoint_display().split(' (')[0]}"

    @property
    def odi_answers(self) -> list[int | None]:
        return [getattr(self, f) for f in ODI_FIELDS]

    def compute_derived(self, medications: Iterable[tuple[str, Decimal]] | None = None) -> None:
        """Recompute ODI score, opioid count and MME/day (medications as (drug, dose) pairs)."""
        self.odi_score = scoring.odi_score(self.odi_answers, settings.ODI_MIN_SECTIONS)
        if medications is None:
            return
        meds = list(medications)
        if self.status == self.Status.COMPLETED:
            self.opioid_count = scoring.opioid_count(d for d, _ in meds)
            self.mme_per_day = scoring.mme_per_day(meds)
            self.mme_factor_table = scoring.MME_FACTOR_TABLE
        else:  # no visit, no prescription recorded
            self.opioid_count = self.mme_per_day = None
            self.mme_factor_table = ""

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.status == self.Status.COMPLETED:
            if self.visit_date is None:
                errors["visit_date"] = "A completed visit needs its date."
            if self.vas is None:
                errors["vas"] = "A completed visit needs the VAS pain score."
        elif self.vas is not None or any(a is not None for a in self.odi_answers):
            errors["status"] = "Scores can only be recorded for a completed visit."
        patient = related_or_none(self, "patient")
        if patient and self.visit_date:
            errors.update(self._date_errors(patient))
        if errors:
            raise ValidationError(errors)

    def _date_errors(self, patient: Patient) -> dict[str, str]:
        errors: dict[str, str] = {}
        if (
            patient.death_date
            and self.visit_date
            and self.visit_date > patient.death_date
            and self.status == self.Status.COMPLETED
        ):
            errors["visit_date"] = (
                f"The patient died on {patient.death_date:%Y-%m-%d}; record this visit as 'Patient deceased'."
            )
            return errors
        index_date = patient.index_procedure_date
        if index_date is None or self.visit_date is None:
            return errors
        if self.timepoint != Timepoint.BASELINE and self.visit_date < index_date:
            errors["visit_date"] = f"A follow-up visit cannot be before the procedure ({index_date:%Y-%m-%d})."
        elif not scoring.in_window(self.timepoint, index_date, self.visit_date) and not self.deviation_note.strip():
            low, high = scoring.visit_window(self.timepoint, index_date)
            errors["deviation_note"] = (
                f"The visit date is outside the {self.get_timepoint_display().split(' (')[0]} window "
                f"({low:%Y-%m-%d} to {high:%Y-%m-%d}); explain the deviation."
            )
        return errors


class Medication(models.Model):
    class Drug(models.TextChoices):
        CODEINE = "codeine", "Codeine"
        HYDROCODONE = "hydrocodone", "Hydrocodone"
        HYDROMORPHONE = "hydromorphone", "Hydromorphone"
        METHADONE = "methadone", "Methadone"
        MORPHINE = "morphine", "Morphine"
        OXYCODONE = "oxycodone", "Oxycodone"
        OXYMORPHONE = "oxymorphone", "Oxymorphone"
        TAPENTADOL = "tapentadol", "Tapentadol"
        TRAMADOL = "tramadol", "Tramadol"
        FENTANYL_TD = "fentanyl_td", "Fentanyl transdermal"
        BUPRENORPHINE = "buprenorphine", "Buprenorphine"
        OTHER = "other", "Other opioid"

    followup = models.ForeignKey(FollowUp, on_delete=models.CASCADE, related_name="medications")
    drug = models.CharField("Opioid", max_length=20, choices=Drug.choices)
    daily_dose = models.DecimalField(
        "Total daily dose",
        max_digits=10,
        decimal_places=3,
        validators=[MinValueValidator(Decimal(0))],
        help_text="mg/day (fentanyl transdermal: mcg/h)",
    )

    class Meta:
        ordering = ["followup", "id"]
        constraints = [models.CheckConstraint(condition=Q(daily_dose__gte=0), name="medication_dose_not_negative")]

    def __str__(self) -> str:
        unit = "mcg/h" if self.drug == self.Drug.FENTANYL_TD else "mg/day"
        return f"{self.get_drug_display()} {self.daily_dose} {unit}"
