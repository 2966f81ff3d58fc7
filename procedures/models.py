from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from patients import rules
from patients.models import Patient
from registry.choices import english_display
from registry.fields import YES_NO, MultiChoiceField, not_in_future, related_or_none
from registry.scoring import complication_severity, days_between

LEVELS = [("L5", "L5"), ("S1", "S1"), ("S2", "S2"), ("S3", "S3"), ("S4", "S4"), ("S5", "S5"), ("coccyx", _("Coccyx"))]


def between(field: str, low: float, high: float | None = None, *, nullable: bool = False) -> Q:
    q = Q(**{f"{field}__gte": low})
    if high is not None:
        q &= Q(**{f"{field}__lte": high})
    return Q(**{f"{field}__isnull": True}) | q if nullable else q


class ProcedureQuerySet(models.QuerySet["Procedure"]):
    def index(self) -> "ProcedureQuerySet":
        """Index procedures (number 1): follow-up days count from them."""
        return self.filter(procedure_number=1)


def levels_display(levels: str) -> str:
    """Levels ("S1|S2|S3") as a nurse reads them: runs of adjacent levels as a range ("S1–S3"), others
    listed ("L5, S2"), names not codes ("Coccyx")."""
    chosen = set(levels.split("|"))
    runs: list[list[tuple[str, Any]]] = []
    previous = False
    for code, label in LEVELS:
        if code in chosen:
            if previous:
                runs[-1].append((code, label))
            else:
                runs.append([(code, label)])
        previous = code in chosen
    names = [str(run[0][1]) if len(run) == 1 else f"{run[0][1]}–{run[-1][1]}" for run in runs]
    return ", ".join(names) or "—"


class Procedure(models.Model):
    class Approach(models.TextChoices):
        INTERPEDICULAR = "interpedicular", _("Interpedicular")
        SHORT_AXIS = "short_axis", _("Short-axis (posterior)")
        LONG_AXIS = "long_axis", _("Long-axis (trans-sacral)")
        TRANSILIAC = "transiliac", _("Transiliac")
        ANTERIOR_OBLIQUE = "anterior_oblique", _("Anterior oblique")
        COMBINED = "combined", _("Combined")
        OTHER = "other", _("Other")

    class Guidance(models.TextChoices):
        FLUORO_BIPLANE = "fluoro_biplane", _("Biplane fluoroscopy")
        FLUORO_SINGLE = "fluoro_single", _("Single-plane fluoroscopy")
        CT = "ct", _("CT")
        CT_FLUORO = "ct_fluoro", _("CT-fluoroscopy")
        CBCT = "cbct", _("Cone-beam CT")
        OTHER = "other", _("Other")

    class Anaesthesia(models.TextChoices):
        LOCAL = "local", _("Local")
        SEDATION = "sedation", _("Local with sedation")
        GENERAL = "general", _("General")

    class NeedleGauge(models.IntegerChoices):
        G10 = 10, _("10 G")
        G11 = 11, _("11 G")
        G13 = 13, _("13 G")
        G15 = 15, _("15 G")

    class Viscosity(models.TextChoices):
        LOW = "low", _("Low")
        MEDIUM = "medium", _("Medium")
        HIGH = "high", _("High")

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="procedures")
    procedure_number = models.PositiveSmallIntegerField(
        _("Procedure number for this patient"),
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(9)],
        help_text=_("1 = index procedure; follow-up days count from procedure 1"),
    )
    procedure_date = models.DateField(_("Procedure date"), validators=[not_in_future])
    operator = models.CharField(_("Operator code"), max_length=20, help_text=_("Interventionalist; a code, not a name"))
    approach = models.CharField(_("Approach"), max_length=20, choices=Approach.choices)
    guidance = models.CharField(_("Image guidance"), max_length=20, choices=Guidance.choices)
    anaesthesia = models.CharField(_("Anaesthesia"), max_length=10, choices=Anaesthesia.choices)
    needle_gauge = models.PositiveSmallIntegerField(_("Needle gauge"), choices=NeedleGauge.choices)
    needle_count = models.PositiveSmallIntegerField(
        _("Number of needles"), validators=[MinValueValidator(1), MaxValueValidator(6)]
    )
    levels_treated = MultiChoiceField(
        _("Levels treated"), options=LEVELS, max_length=40, help_text=_("Each treated level counts as one lesion")
    )
    cement_product = models.CharField(
        _("Cement product"), max_length=100, blank=True, help_text=_("e.g. PALACOS V PMMA")
    )
    cement_viscosity = models.CharField(_("Cement viscosity"), max_length=10, choices=Viscosity.choices, blank=True)
    cement_volume_ml = models.DecimalField(
        _("Cement volume injected (mL)"),
        max_digits=3,
        decimal_places=1,
        validators=[MinValueValidator(Decimal("0.5")), MaxValueValidator(Decimal("40"))],
    )
    operation_time_min = models.PositiveSmallIntegerField(
        _("Procedure duration (min)"), validators=[MinValueValidator(5), MaxValueValidator(300)]
    )
    fluoroscopy_time_s = models.PositiveIntegerField(
        _("Fluoroscopy time (s)"), null=True, blank=True, validators=[MaxValueValidator(7200)]
    )
    dose_area_product_gycm2 = models.DecimalField(
        _("Dose-area product (Gy·cm²)"),
        max_digits=8,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(2000))],
    )
    ct_dlp_mgycm = models.DecimalField(
        _("CT dose-length product (mGy·cm)"),
        max_digits=9,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(20000))],
    )
    technical_success = models.BooleanField(_("Technical success"), choices=YES_NO)
    leakage = models.BooleanField(_("Cement leakage on post-procedure CT"), choices=YES_NO)
    admission_date = models.DateField(_("Admission date"))
    discharge_date = models.DateField(_("Discharge date"))
    version = models.PositiveIntegerField(default=1, editable=False)

    objects = ProcedureQuerySet.as_manager()

    class Meta:
        verbose_name = _("procedure")
        verbose_name_plural = _("procedures")
        ordering = ["patient", "procedure_number"]
        constraints = [
            models.UniqueConstraint(fields=["patient", "procedure_number"], name="procedure_number_unique_per_patient"),
            models.CheckConstraint(condition=between("procedure_number", 1, 9), name="procedure_number_1_9"),
            models.CheckConstraint(condition=between("needle_count", 1, 6), name="procedure_needles_1_6"),
            models.CheckConstraint(condition=between("cement_volume_ml", 0.5, 40), name="procedure_cement_0_5_40"),
            models.CheckConstraint(condition=between("operation_time_min", 5, 300), name="procedure_time_5_300"),
            models.CheckConstraint(
                condition=between("fluoroscopy_time_s", 0, 7200, nullable=True), name="procedure_fluoro_0_7200"
            ),
            models.CheckConstraint(
                condition=between("dose_area_product_gycm2", 0, 2000, nullable=True), name="procedure_dap_0_2000"
            ),
            models.CheckConstraint(
                condition=between("ct_dlp_mgycm", 0, 20000, nullable=True), name="procedure_dlp_0_20000"
            ),
            models.CheckConstraint(
                condition=Q(discharge_date__gte=models.F("admission_date")), name="procedure_discharge_after_admission"
            ),
            models.CheckConstraint(condition=~Q(levels_treated=""), name="procedure_levels_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.patient.study_id} procedure {self.procedure_number}"

    def clean(self) -> None:
        errors: dict[str, Any] = {}
        if self.admission_date and self.discharge_date and self.discharge_date < self.admission_date:
            errors["discharge_date"] = gettext("Discharge cannot be before admission.")
        if self.procedure_date and self.admission_date and self.procedure_date < self.admission_date:
            errors["procedure_date"] = gettext("The procedure cannot be before admission.")
        if self.procedure_date and self.discharge_date and self.procedure_date > self.discharge_date:
            errors["procedure_date"] = gettext("The procedure cannot be after discharge.")
        if not errors and self.procedure_date:
            errors.update(rules.errors_for(self, related_or_none(self, "patient")))  # type: ignore[arg-type]
        if errors:
            raise ValidationError(errors)

    @property
    def hospital_stay_days(self) -> int:
        return days_between(self.admission_date, self.discharge_date)

    def levels_display(self) -> str:
        return levels_display(self.levels_treated)

    @property
    def lesion_count(self) -> int:
        return len([c for c in self.levels_treated.split("|") if c])


class Leakage(models.Model):
    class Site(models.TextChoices):
        PRESACRAL = "presacral", _("Presacral soft tissue")
        FORAMINAL = "foraminal", _("Sacral foramen")
        SACRAL_CANAL = "sacral_canal", _("Sacral canal (epidural)")
        SI_JOINT = "si_joint", _("Sacroiliac joint")
        FRACTURE_GAP = "fracture_gap", _("Fracture gap")
        DISC = "disc", _("L5-S1 disc")
        VENOUS = "venous", _("Local veins")
        PULMONARY = "pulmonary", _("Pulmonary cement embolism")
        SOFT_TISSUE_OTHER = "soft_tissue_other", _("Other soft tissue")

    procedure = models.ForeignKey(Procedure, on_delete=models.CASCADE, related_name="leakages")
    site = models.CharField(_("Leakage site"), max_length=20, choices=Site.choices)
    symptomatic = models.BooleanField(_("Leakage symptomatic"), choices=YES_NO)
    treatment_required = models.BooleanField(_("Leakage required treatment"), choices=YES_NO)
    version = models.PositiveIntegerField(default=1, editable=False)

    class Meta:
        verbose_name = _("cement leakage")
        verbose_name_plural = _("cement leakages")
        ordering = ["procedure", "site"]
        constraints = [models.UniqueConstraint(fields=["procedure", "site"], name="leakage_site_once_per_procedure")]

    def __str__(self) -> str:
        return f"{english_display(self, 'site')} leakage"  # stored in the audit trail (object_repr): one language


class Complication(models.Model):
    class Type(models.TextChoices):
        NERVE_ROOT_INJURY = "nerve_root_injury", _("Nerve root injury")
        CAUDA_EQUINA = "cauda_equina", _("Cauda equina syndrome")
        PULMONARY_EMBOLISM = "pulmonary_embolism", _("Pulmonary embolism")
        INTESTINAL_RUPTURE = "intestinal_rupture", _("Intestinal rupture")
        PERIOPERATIVE_DEATH = "perioperative_death", _("Perioperative death")
        URINARY_RETENTION = "urinary_retention", _("Urinary retention")
        WOUND_HEMATOMA = "wound_hematoma", _("Wound haematoma")
        INFECTION = "infection", _("Infection")
        CSF_LEAK = "csf_leak", _("CSF leak")
        OTHER = "other", _("Other")

    class Severity(models.TextChoices):
        MAJOR = "major", _("Major")
        MINOR = "minor", _("Minor")

    procedure = models.ForeignKey(Procedure, on_delete=models.CASCADE, related_name="complications")
    onset_date = models.DateField(_("Onset date"), validators=[not_in_future])
    type = models.CharField(_("Complication"), max_length=30, choices=Type.choices)
    severity = models.CharField(
        _("Major or minor"),
        max_length=5,
        choices=Severity.choices,
        blank=True,
        help_text=_("Derived for the study's eight named types; entered for CSF leak and other"),
    )
    cirse_grade = models.PositiveSmallIntegerField(
        _("CIRSE adverse-event grade"), validators=[MinValueValidator(1), MaxValueValidator(6)]
    )
    resolved = models.BooleanField(_("Resolved"), choices=YES_NO)
    description = models.TextField(_("Description"), blank=True)
    version = models.PositiveIntegerField(default=1, editable=False)

    class Meta:
        verbose_name = _("complication")
        verbose_name_plural = _("complications")
        ordering = ["procedure", "onset_date", "id"]
        constraints = [
            models.CheckConstraint(condition=between("cirse_grade", 1, 6), name="complication_cirse_1_6"),
            models.CheckConstraint(condition=~Q(severity=""), name="complication_severity_set"),
        ]

    def __str__(self) -> str:
        # stored in the audit trail (object_repr): one language
        return f"{english_display(self, 'type')} (CIRSE {self.cirse_grade})"

    def compute_derived(self) -> None:
        self.severity = complication_severity(self.type, self.severity)

    def clean(self) -> None:
        self.compute_derived()
        errors: dict[str, Any] = {}
        if not self.severity:
            errors["severity"] = gettext("Say whether this complication is major or minor.")
        procedure = related_or_none(self, "procedure")
        if self.onset_date and procedure is not None and procedure.procedure_date:
            errors.update(rules.errors_for(self, related_or_none(procedure, "patient")))  # type: ignore[arg-type]
        if errors:
            raise ValidationError(errors)

    def save(self, *args: object, **kwargs: object) -> None:
        self.compute_derived()
        super().save(*args, **kwargs)  # type: ignore[arg-type]
