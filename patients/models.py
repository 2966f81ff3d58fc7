import datetime
from functools import cached_property
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accounts.models import Site
from patients import rules
from registry.fields import YES_NO, MultiChoiceField, not_in_future, related_or_none
from registry.scoring import age_in_years


class ConsentVersion(models.Model):
    version = models.CharField(_("Consent form version"), max_length=20, unique=True, help_text=_("e.g. 1.0"))
    effective_from = models.DateField(_("Version in force from"))
    effective_to = models.DateField(
        _("Version in force until"), null=True, blank=True, help_text=_("Blank = still in force")
    )
    blank_form = models.FileField(_("Blank consent form"), upload_to="consent_forms/", blank=True)

    class Meta:
        verbose_name = _("consent form version")
        verbose_name_plural = _("consent form versions")
        ordering = ["-effective_from"]
        constraints = [
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True) | Q(effective_to__gte=models.F("effective_from")),
                name="consentversion_period_ordered",
            )
        ]

    def __str__(self) -> str:
        return f"v{self.version}"

    def clean(self) -> None:
        if self.effective_to and self.effective_from and self.effective_to < self.effective_from:
            raise ValidationError({"effective_to": gettext("The end of the period cannot be before its start.")})

    def in_force_on(self, day: datetime.date) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day <= self.effective_to)


class PatientQuerySet(models.QuerySet["Patient"]):
    def with_removal(self) -> "PatientQuerySet":
        removed = Consent.objects.filter(patient=OuterRef("pk"), withdrawal_scope=Consent.WithdrawalScope.REMOVE_DATA)
        return self.annotate(data_removed=Exists(removed))

    def in_analysis(self) -> "PatientQuerySet":
        """Patients whose data may be analysed and exported (not withdrawn with "remove data")."""
        return self.exclude(consents__withdrawal_scope=Consent.WithdrawalScope.REMOVE_DATA)

    def removed(self) -> "PatientQuerySet":
        return self.filter(consents__withdrawal_scope=Consent.WithdrawalScope.REMOVE_DATA).distinct()


class FollowUpEndReason(models.TextChoices):
    PROTOCOL_COMPLETED = "protocol_completed", _("Protocol completed")
    INVESTIGATOR_DECISION = "investigator_decision", _("Investigator decision")
    TRANSFERRED = "transferred", _("Transferred to another centre")
    OTHER = "other", _("Other")


class Patient(models.Model):
    class Sex(models.TextChoices):
        MALE = "M", _("Male")
        FEMALE = "F", _("Female")

    class PrimaryTumour(models.TextChoices):
        LUNG = "lung", _("Lung")
        LIVER = "liver", _("Liver (hepatocellular)")
        BREAST = "breast", _("Breast")
        PROSTATE = "prostate", _("Prostate")
        KIDNEY = "kidney", _("Kidney")
        THYROID = "thyroid", _("Thyroid")
        MYELOMA = "myeloma", _("Multiple myeloma")
        COLORECTAL = "colorectal", _("Colorectal")
        OTHER = "other", _("Other")

    class LesionCharacter(models.TextChoices):
        OSTEOLYTIC = "osteolytic", _("Osteolytic")
        OSTEOBLASTIC = "osteoblastic", _("Osteoblastic")
        MIXED = "mixed", _("Mixed")

    class ImagingModality(models.TextChoices):
        CT = "ct", _("CT")
        MRI = "mri", _("MRI")
        BOTH = "both", _("CT and MRI")

    DENIS_ZONES = [("I", _("Zone I (ala)")), ("II", _("Zone II (foramina)")), ("III", _("Zone III (central canal)"))]

    study_id = models.CharField(
        _("Study ID"),
        max_length=32,
        unique=True,
        validators=[RegexValidator(r"^[A-Z0-9]+-[0-9]+$", _("Use the site code, a dash and a number, e.g. BJ-0001."))],
        help_text=_("Registry-assigned, site code + sequence, e.g. BJ-0001"),
    )
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="patients", verbose_name=_("Enrolling site"))
    enrolment_date = models.DateField(
        _("Date of enrolment"), validators=[MinValueValidator(datetime.date(2000, 1, 1)), not_in_future]
    )
    full_name = models.CharField(_("Patient full name"), max_length=200)
    mrn = models.CharField(_("Hospital medical record number"), max_length=50)
    email = models.EmailField(
        _("Patient e-mail for self-report invitations"),
        blank=True,
        help_text=_("Optional; used only to send visit links; never in de-identified exports"),
    )
    date_of_birth = models.DateField(
        _("Date of birth"), validators=[MinValueValidator(datetime.date(1900, 1, 1)), not_in_future]
    )
    age_at_enrolment = models.PositiveSmallIntegerField(
        _("Age at enrolment"), editable=False, help_text=_("Derived: whole years from date of birth to enrolment")
    )
    sex = models.CharField(_("Sex"), max_length=1, choices=Sex.choices)
    primary_tumour = models.CharField(_("Primary tumour"), max_length=20, choices=PrimaryTumour.choices)
    primary_tumour_other = models.CharField(_("Other primary tumour, specify"), max_length=200, blank=True)
    lesion_character = models.CharField(
        _("Lesion character on imaging"), max_length=20, choices=LesionCharacter.choices
    )
    pathological_fracture = models.BooleanField(_("Pathological fracture present"), choices=YES_NO)
    denis_zones = MultiChoiceField(_("Denis zones involved"), options=DENIS_ZONES, max_length=20)
    neurological_deficit = models.BooleanField(_("Neurological deficit at presentation"), choices=YES_NO)
    symptom_onset_date = models.DateField(_("Date sacral symptoms began"), validators=[not_in_future])
    imaging_date = models.DateField(_("Date of diagnostic imaging (CT/MRI)"), validators=[not_in_future])
    imaging_modality = models.CharField(_("Diagnostic imaging"), max_length=10, choices=ImagingModality.choices)
    prior_radiotherapy = models.BooleanField(_("Prior radiotherapy to the sacrum"), choices=YES_NO)
    prior_chemotherapy = models.BooleanField(_("Prior systemic therapy"), choices=YES_NO)
    ecog = models.PositiveSmallIntegerField(
        _("ECOG performance status"), null=True, blank=True, validators=[MaxValueValidator(4)]
    )
    death_date = models.DateField(_("Date of death"), null=True, blank=True, validators=[not_in_future])
    notes = models.TextField(_("Notes"), blank=True)
    follow_up_ended = models.DateField(
        _("Follow-up ended on"),
        null=True,
        blank=True,
        editable=False,
        help_text=_(
            "Set by 'End follow-up': the patient leaves the worklist; survival is still censored at the last contact"
        ),
    )
    follow_up_end_reason = models.CharField(
        _("Reason follow-up ended"), max_length=30, choices=FollowUpEndReason.choices, blank=True, editable=False
    )
    follow_up_end_note = models.TextField(_("Follow-up end note"), blank=True, editable=False)
    version = models.PositiveIntegerField(default=1, editable=False, help_text=_("Optimistic concurrency token"))

    objects = PatientQuerySet.as_manager()

    class Meta:
        verbose_name = _("patient")
        verbose_name_plural = _("patients")
        ordering = ["study_id"]
        constraints = [
            models.UniqueConstraint(fields=["site", "mrn"], name="patient_mrn_unique_per_site"),
            models.CheckConstraint(
                condition=Q(age_at_enrolment__gte=18, age_at_enrolment__lte=120), name="patient_age_18_120"
            ),
            models.CheckConstraint(condition=Q(ecog__isnull=True) | Q(ecog__lte=4), name="patient_ecog_0_4"),
            models.CheckConstraint(
                condition=Q(date_of_birth__lte=models.F("enrolment_date")), name="patient_born_before_enrolment"
            ),
            models.CheckConstraint(
                condition=Q(death_date__isnull=True) | Q(death_date__gte=models.F("date_of_birth")),
                name="patient_death_after_birth",
            ),
            models.CheckConstraint(
                condition=~Q(primary_tumour="other") | ~Q(primary_tumour_other=""),
                name="patient_other_tumour_specified",
            ),
        ]

    def __str__(self) -> str:
        return self.study_id

    def compute_derived(self) -> None:
        if self.date_of_birth and self.enrolment_date:
            self.age_at_enrolment = age_in_years(self.date_of_birth, self.enrolment_date)

    def clean(self) -> None:
        self.compute_derived()
        errors: dict[str, Any] = {}
        if self.date_of_birth and self.enrolment_date:
            if self.date_of_birth > self.enrolment_date:
                errors["date_of_birth"] = gettext("Date of birth must be before the date of enrolment.")
            elif not 18 <= self.age_at_enrolment <= 120:
                errors["date_of_birth"] = gettext(
                    "Age at enrolment would be %(age)s; the registry enrols adults aged 18 to 120."
                ) % {"age": self.age_at_enrolment}
        if self.primary_tumour == self.PrimaryTumour.OTHER and not self.primary_tumour_other.strip():
            errors["primary_tumour_other"] = gettext("Specify the primary tumour when it is 'Other'.")
        if self.death_date and self.date_of_birth and self.death_date < self.date_of_birth:
            errors["death_date"] = gettext("Date of death cannot be before the date of birth.")
        if not errors and self.pk is not None:
            errors.update(rules.errors_for(self, self))  # type: ignore[arg-type]
        site = related_or_none(self, "site")
        if self.study_id and site and not self.study_id.startswith(f"{site.code}-"):
            errors["study_id"] = gettext("Study IDs of site %(code)s start with '%(code)s-'.") % {"code": site.code}
        if errors:
            raise ValidationError(errors)

    def save(self, *args: object, **kwargs: object) -> None:
        # Stored for queries and exports; always from the one derivation.
        self.compute_derived()
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    @cached_property
    def index_procedure_date(self) -> datetime.date | None:
        """Date of procedure 1, from which visit windows and day offsets count."""
        return self.procedures.filter(procedure_number=1).values_list("procedure_date", flat=True).first()

    @property
    def is_deceased(self) -> bool:
        return self.death_date is not None

    def current_consent(self) -> "Consent | None":
        """The most recent consent record (re-consent adds a record)."""
        consents = sorted(self.consents.all(), key=lambda c: (c.signed_date, c.pk))
        return consents[-1] if consents else None

    @property
    def data_removed(self) -> bool:
        return any(c.withdrawal_scope == Consent.WithdrawalScope.REMOVE_DATA for c in self.consents.all())

    def data_entry_block_reason(self) -> str:
        """Why clinical data cannot be entered now, or "" when it can."""
        consent = self.current_consent()
        if consent is None:
            return gettext(
                "No consent is recorded for this patient: record a signed consent before entering clinical data."
            )
        if not consent.scope_registry:
            return gettext("The patient did not consent to registry data use.")
        if consent.withdrawn_date and consent.withdrawal_scope != Consent.WithdrawalScope.NO_CONTACT:
            return gettext("Consent was withdrawn on %(date)s (%(scope)s): no new data may be entered.") % {
                "date": f"{consent.withdrawn_date:%Y-%m-%d}",
                "scope": consent.get_withdrawal_scope_display(),
            }
        return ""


# The scopes in two words, for the consent's state on the patient page ("Withdrawn: Remove data").
WITHDRAWAL_SHORT = {
    "no_contact": _("No further contact"),
    "no_new_data": _("No new data"),
    "remove_data": _("Remove data"),
}


class Consent(models.Model):
    class WithdrawalScope(models.TextChoices):
        NO_CONTACT = "no_contact", _("No further contact; data kept")
        NO_NEW_DATA = "no_new_data", _("No new data; existing data kept")
        REMOVE_DATA = "remove_data", _("Remove data from analyses and exports")

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="consents")
    consent_version = models.ForeignKey(
        ConsentVersion, on_delete=models.PROTECT, related_name="consents", verbose_name=_("Consent form version")
    )
    signed_date = models.DateField(_("Date consent signed"), validators=[not_in_future])
    obtained_by = models.CharField(_("Staff member who obtained consent"), max_length=100)
    scope_registry = models.BooleanField(_("Consents to registry data use"), choices=YES_NO)
    scope_future_contact = models.BooleanField(_("Consents to future contact"), choices=YES_NO)
    document = models.FileField(_("Signed consent document (PDF)"), upload_to="consents/%Y/", blank=True)
    document_sha256 = models.CharField(
        _("SHA-256 of the signed consent document"),
        max_length=64,
        blank=True,
        validators=[RegexValidator(r"^[0-9a-f]{64}$", _("A SHA-256 is 64 lower-case hexadecimal characters."))],
    )
    withdrawn_date = models.DateField(_("Date of withdrawal"), null=True, blank=True, validators=[not_in_future])
    withdrawal_scope = models.CharField(
        _("Scope of withdrawal"), max_length=20, choices=WithdrawalScope.choices, blank=True
    )
    withdrawal_reason = models.TextField(_("Reason for withdrawal"), blank=True)
    version = models.PositiveIntegerField(default=1, editable=False)

    class Meta:
        verbose_name = _("consent record")
        verbose_name_plural = _("consent records")
        ordering = ["patient", "signed_date", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(withdrawn_date__isnull=True) & Q(withdrawal_scope=""))
                | (Q(withdrawn_date__isnull=False) & ~Q(withdrawal_scope="")),
                name="consent_withdrawal_scope_iff_date",
            ),
            models.CheckConstraint(
                condition=Q(withdrawn_date__isnull=True) | Q(withdrawn_date__gte=models.F("signed_date")),
                name="consent_withdrawn_after_signed",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.patient_id and self.patient.study_id} consent {self.consent_version} ({self.signed_date})"

    def clean(self) -> None:
        errors: dict[str, Any] = {}
        v = related_or_none(self, "consent_version")
        if v and self.signed_date and not v.in_force_on(self.signed_date):
            until = v.effective_to.isoformat() if v.effective_to else gettext("now")
            errors["signed_date"] = gettext(
                "Consent version %(version)s is in force from %(start)s to %(end)s; %(day)s is outside that period."
            ) % {
                "version": v.version,
                "start": v.effective_from.isoformat(),
                "end": until,
                "day": self.signed_date.isoformat(),
            }
        if self.withdrawn_date and not self.withdrawal_scope:
            errors["withdrawal_scope"] = gettext("Give the scope of the withdrawal.")
        if self.withdrawal_scope and not self.withdrawn_date:
            errors["withdrawn_date"] = gettext("Give the date of withdrawal.")
        if self.withdrawn_date and self.signed_date and self.withdrawn_date < self.signed_date:
            errors["withdrawn_date"] = gettext("Withdrawal cannot be before the consent was signed.")
        if errors:
            raise ValidationError(errors)

    @property
    def is_withdrawn(self) -> bool:
        return self.withdrawn_date is not None

    @property
    def state(self) -> str:
        """The consent's state as a nurse reads it, e.g. "Withdrawn: Remove data"."""
        if self.withdrawn_date:
            return gettext("Withdrawn: %(scope)s") % {
                "scope": WITHDRAWAL_SHORT.get(self.withdrawal_scope, self.withdrawal_scope)
            }
        return gettext("Valid") if self.scope_registry else gettext("Registry use refused")


class CaseLockQuerySet(models.QuerySet["CaseLock"]):
    def active(self) -> "CaseLockQuerySet":
        return self.filter(unlocked_at__isnull=True)


class CaseLock(models.Model):
    """An investigator's electronic signature locking a whole case (timepoint blank) or one visit.

    21 CFR Part 11 §11.50: the signed record shows the signer's printed name, the
    date and time of signing and the meaning of the signature; §11.200: signed by
    re-entering the password (and the second factor when the signer has one).
    While `unlocked_at` is empty the case (or visit) refuses every change through
    the services (patients.services.ensure_data_entry_allowed); an admin unlocks
    it with a reason. Rows are never deleted: an unlocked lock stays as history.
    """

    MEANING = "I approve these data as complete and accurate."

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="locks")
    timepoint = models.CharField(
        _("Visit locked"), max_length=10, blank=True, help_text=_("Blank = the whole case; else the visit's timepoint")
    )
    signed_by = models.ForeignKey("accounts.User", on_delete=models.PROTECT, related_name="+")
    signed_by_name = models.CharField(_("Signer's printed name"), max_length=200)
    signed_at = models.DateTimeField(_("Signed at"))
    meaning = models.CharField(_("Meaning of the signature"), max_length=200)
    second_factor = models.BooleanField(_("Second factor checked at signing"), default=False)
    unlocked_at = models.DateTimeField(null=True, blank=True)
    unlocked_by = models.ForeignKey("accounts.User", on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    unlock_reason = models.TextField(blank=True)

    objects = CaseLockQuerySet.as_manager()

    class Meta:
        verbose_name = _("case lock")
        verbose_name_plural = _("case locks")
        ordering = ["patient", "-signed_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "timepoint"],
                condition=Q(unlocked_at__isnull=True),
                name="caselock_one_active_per_record",
            )
        ]

    def __str__(self) -> str:
        what = f"visit {self.timepoint}" if self.timepoint else "case"
        return f"{self.patient.study_id} {what} lock signed by {self.signed_by_name}"

    @property
    def what(self) -> str:
        return (
            str(rules.TIMEPOINT_NAMES.get(self.timepoint, self.timepoint)) if self.timepoint else gettext("whole case")
        )
