from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.text import format_lazy
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from patients import rules
from patients.models import Patient
from registry import measures, scoring
from registry.choices import english_display
from registry.fields import not_in_future, related_or_none

ODI_SECTION_TITLES = [
    _("Pain intensity"),
    _("Personal care"),
    _("Lifting"),
    _("Walking"),
    _("Sitting"),
    _("Standing"),
    _("Sleeping"),
    _("Sex life"),
    _("Social life"),
    _("Travelling"),
]
ODI_FIELDS = [f"odi_q{i}" for i in range(1, 11)]


class Timepoint(models.TextChoices):
    BASELINE = "baseline", _("Baseline (0-14 days before)")
    POST = "post", _("Post-procedure (0-3 days)")
    W1 = "w1", _("1 week (5-10 days)")
    M1 = "m1", _("1 month (21-45 days)")
    M3 = "m3", _("3 months (75-105 days)")
    M6 = "m6", _("6 months (150-210 days)")
    M12 = "m12", _("12 months (330-400 days)")


def _odi_field(number: int) -> models.PositiveSmallIntegerField:
    return models.PositiveSmallIntegerField(
        format_lazy(_("ODI section {number}: {title}"), number=number, title=ODI_SECTION_TITLES[number - 1]),
        null=True,
        blank=True,
        validators=[MaxValueValidator(5)],
        help_text=_("Blank = not answered; if two boxes are ticked record the higher"),
    )


class FollowUp(models.Model):
    class Status(models.TextChoices):
        COMPLETED = "completed", _("Completed")
        MISSED = "missed", _("Missed")
        DECEASED = "deceased", _("Patient deceased")
        WITHDRAWN = "withdrawn", _("Patient withdrawn")
        LOST = "lost", _("Lost to follow-up")

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="followups")
    timepoint = models.CharField(_("Visit"), max_length=10, choices=Timepoint.choices)
    visit_date = models.DateField(_("Visit date"), null=True, blank=True, validators=[not_in_future])
    status = models.CharField(_("Visit status"), max_length=10, choices=Status.choices, default=Status.COMPLETED)
    vas = models.DecimalField(
        _("Pain, visual analogue scale (0-10)"),
        max_digits=3,
        decimal_places=1,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(10))],
        help_text=_("0 = no pain, 10 = worst pain; one decimal allowed"),
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
    odi_score = models.FloatField(_("Oswestry Disability Index (%)"), null=True, blank=True, editable=False)
    opioid_count = models.PositiveSmallIntegerField(
        _("Number of opioids prescribed"), null=True, blank=True, editable=False
    )
    mme_per_day = models.FloatField(
        _("Oral morphine milligram equivalents per day"), null=True, blank=True, editable=False
    )
    mme_factor_table = models.CharField(
        max_length=20, blank=True, editable=False, help_text=_("Conversion factors used")
    )
    odi_min_sections = models.PositiveSmallIntegerField(
        _("ODI scored with at least this many sections"),
        null=True,
        blank=True,
        editable=False,
        validators=[MinValueValidator(1), MaxValueValidator(10)],
        help_text=_("The scoring rule in force when the visit was first scored; edits keep it"),
    )
    deviation_note = models.TextField(_("Protocol deviation note"), blank=True)
    no_opioids = models.BooleanField(
        _("No opioids taken"), default=False, help_text=_("Tick when the patient takes no opioid (no rows below)")
    )
    version = models.PositiveIntegerField(default=1, editable=False)

    class Meta:
        verbose_name = _("follow-up visit")
        verbose_name_plural = _("follow-up visits")
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
        # In English whoever saves: the audit trail stores this name with every event (object_repr).
        return f"{self.patient.study_id} {english_display(self, 'timepoint').split(' (')[0]}"

    @property
    def odi_answers(self) -> list[int | None]:
        return [getattr(self, f) for f in ODI_FIELDS]

    def compute_derived(self, medications: Iterable["Medication"] | None = None) -> None:
        """Recompute ODI score, opioid count and MME/day from the answers and the opioid rows.

        The ODI rule (minimum sections answered) is the one the visit was first
        scored with; a new visit takes the current setting, so changing the
        setting never mixes two rules within one visit's history.
        """
        if self.odi_min_sections is None:
            self.odi_min_sections = settings.ODI_MIN_SECTIONS
        self.odi_score = scoring.odi_score(self.odi_answers, self.odi_min_sections)
        if medications is None:
            return
        meds = [(m.drug, m.daily_dose, m.route) for m in medications]
        if self.status == self.Status.COMPLETED:
            self.opioid_count = scoring.opioid_count(d for d, _, _ in meds)
            self.mme_per_day = scoring.mme_per_day(meds)
            self.mme_factor_table = scoring.MME_FACTOR_TABLE
        else:  # no visit, no prescription recorded
            self.opioid_count = self.mme_per_day = None
            self.mme_factor_table = ""

    def clean(self) -> None:
        errors: dict[str, Any] = {}
        if self.status == self.Status.COMPLETED:
            if self.visit_date is None:
                errors["visit_date"] = gettext("A completed visit needs its date.")
            if self.vas is None:
                errors["vas"] = gettext("A completed visit needs the VAS pain score.")
        elif self.vas is not None or any(a is not None for a in self.odi_answers):
            errors["status"] = gettext("Scores can only be recorded for a completed visit.")
        if self.visit_date:
            for field, messages in rules.errors_for(self, related_or_none(self, "patient")).items():
                errors.setdefault(field, messages)  # type: ignore[arg-type]
        if errors:
            raise ValidationError(errors)


class Medication(models.Model):
    class Drug(models.TextChoices):
        CODEINE = "codeine", _("Codeine")
        HYDROCODONE = "hydrocodone", _("Hydrocodone")
        HYDROMORPHONE = "hydromorphone", _("Hydromorphone")
        METHADONE = "methadone", _("Methadone")
        MORPHINE = "morphine", _("Morphine")
        OXYCODONE = "oxycodone", _("Oxycodone")
        OXYMORPHONE = "oxymorphone", _("Oxymorphone")
        TAPENTADOL = "tapentadol", _("Tapentadol")
        TRAMADOL = "tramadol", _("Tramadol")
        FENTANYL_TD = "fentanyl_td", _("Fentanyl transdermal")
        BUPRENORPHINE = "buprenorphine", _("Buprenorphine")
        OTHER = "other", _("Other opioid")

    class Route(models.TextChoices):
        ORAL = "oral", _("Oral")
        TRANSDERMAL = "transdermal", _("Transdermal")
        IV = "iv", _("Intravenous (including PCA)")
        SC = "sc", _("Subcutaneous")
        OTHER = "other", _("Other route")

    followup = models.ForeignKey(FollowUp, on_delete=models.CASCADE, related_name="medications")
    drug = models.CharField(_("Opioid"), max_length=20, choices=Drug.choices)
    daily_dose = models.DecimalField(
        _("Total daily dose"),
        max_digits=10,
        decimal_places=3,
        validators=[MinValueValidator(Decimal(0))],
        help_text=_("mg/day (fentanyl transdermal: mcg/h)"),
    )
    route = models.CharField(
        _("Route"),
        max_length=12,
        choices=Route.choices,
        blank=True,
        help_text=_(
            "Blank: the drug's usual route (transdermal for fentanyl patches, oral otherwise). "
            "MME/day is known only for oral doses and transdermal fentanyl."
        ),
    )
    version = models.PositiveIntegerField(default=1, editable=False)

    class Meta:
        verbose_name = _("opioid")
        verbose_name_plural = _("opioids")
        ordering = ["followup", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(daily_dose__gte=0), name="medication_dose_not_negative"),
            models.CheckConstraint(condition=~Q(route=""), name="medication_route_set"),
        ]

    def compute_derived(self) -> None:
        self.route = self.route or scoring.usual_route(self.drug)

    def clean(self) -> None:
        self.compute_derived()

    def save(self, *args: object, **kwargs: object) -> None:
        self.compute_derived()
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def __str__(self) -> str:
        unit = "mcg/h" if self.drug == self.Drug.FENTANYL_TD else "mg/day"
        # stored in the audit trail (object_repr): one language
        return (
            f"{english_display(self, 'drug')} {measures.record(self.daily_dose, 'daily_dose', localize=False)} {unit}"
        )


class OdiText(models.Model):
    """The site's licensed ODI wording for one language, installed by `manage.py install_odi_text`.

    Here, below the self-report app, because the staff's visit form shows the
    same statements; the table keeps the name it had in selfreport (moved, not copied).
    """

    language = models.CharField(max_length=10, unique=True)
    content = models.JSONField()
    sha256 = models.CharField(max_length=64)
    installed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("ODI text")
        verbose_name_plural = _("ODI texts")
        db_table = "selfreport_oditext"

    def __str__(self) -> str:
        return f"ODI text ({self.language})"


class DueWindow(models.Model):
    """A visit not recorded yet of a patient in follow-up, with its window: the worklist's rows.

    Derived, never edited: PostgreSQL triggers (migration 0005) recompute a patient's rows in the
    statement that changes her, her consents, her index procedure or her visits, whoever the writer
    (the services, import_bundle's COPY, generate_synthetic), so the worklist reads a few index
    ranges instead of every patient's consents and visits, and is never stale. Who is in follow-up
    is outcomes.selectors' rule (alive, follow-up not ended, no "remove data", no visit recorded as
    deceased or withdrawn, the latest consent allows registry use and is not withdrawn from new
    data); the window is registry.scoring.VISIT_WINDOWS from the index procedure. Not on SQLite
    (the demo's worklist is computed in Python there).
    """

    derived = True  # kept by triggers, never audited: not a record of the trail's filter

    # No foreign-key constraint: a patient's rows are removed by the trigger in the same statement as
    # the patient (Django's delete collector need not know them: no extra query on deletions).
    patient = models.ForeignKey(
        Patient, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )  # the unique (patient, timepoint) index serves the look-ups
    site_id = models.BigIntegerField()
    study_id = models.CharField(max_length=32)
    timepoint = models.CharField(max_length=10, choices=Timepoint.choices)
    rank = models.SmallIntegerField()  # the timepoint's position in VISIT_WINDOWS (the worklist's tie-break)
    opens = models.DateField()
    closes = models.DateField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["patient", "timepoint"], name="duewindow_one_per_timepoint")]
        indexes = [
            models.Index(fields=["closes", "study_id", "rank"], name="duewindow_closes"),
            models.Index(fields=["opens", "study_id", "rank"], name="duewindow_opens"),
        ]

    def __str__(self) -> str:
        return f"{self.study_id} {self.timepoint}: {self.opens} - {self.closes}"


class AwaitingProcedure(models.Model):
    """A patient in follow-up with no index procedure yet: the worklist's "enrolled, no procedure
    recorded yet" list. Derived like DueWindow, by the same triggers (migration 0006)."""

    derived = True  # kept by triggers, never audited: not a record of the trail's filter

    patient = models.OneToOneField(
        Patient, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+", primary_key=True
    )
    site_id = models.BigIntegerField()
    study_id = models.CharField(max_length=32)
    enrolment_date = models.DateField()
    consented = models.BooleanField()  # the latest consent allows registry use (False: none yet, or it refuses)

    class Meta:
        indexes = [models.Index(fields=["enrolment_date", "study_id"], name="awaiting_enrolment")]

    def __str__(self) -> str:
        return f"{self.study_id}: enrolled {self.enrolment_date}, no procedure"


class AnalysisRow(models.Model):
    """One patient as the dashboard analyses her, packed: derived, never edited.

    The columns the cohort filters and the population rules need (site, primary tumour, the index
    procedure's approach and date, whether the latest consent allows registry use, whether any
    consent removed the data), and `packed`: the Table 1 attributes, the index procedure's values,
    leakage sites and complication types as bit masks, the survival time and, per timepoint, the
    completed visit's VAS (tenths), ODI (1/126 points), opioids and MME/day, as fixed-width
    big-endian integers and floats (layout: dashboard.selectors.DTYPE, migration 0007). The
    triggers of migration 0005 recompute a patient's row in the statement that changes her or her
    records, so the dashboard reads one narrow row per patient and is never stale. Not on SQLite.
    """

    derived = True  # kept by triggers, never audited: not a record of the trail's filter

    patient = models.OneToOneField(
        Patient, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+", primary_key=True
    )
    site_id = models.BigIntegerField()
    primary_tumour = models.CharField(max_length=20)
    approach = models.CharField(max_length=20, blank=True)  # of the index procedure ("" without one)
    index_date = models.DateField(null=True)
    consented = models.BooleanField()
    removed = models.BooleanField()
    packed = models.BinaryField()

    def __str__(self) -> str:
        return f"analysis row of patient {self.patient_id}"
