"""Data-entry forms for patients and consents."""

from typing import Any

from crispy_forms.bootstrap import InlineRadios
from crispy_forms.layout import Column, Row
from django import forms
from django.core.files.uploadedfile import UploadedFile
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from accounts.models import User
from accounts.permissions import visible_sites
from patients.models import Consent, ConsentVersion, Patient
from patients.services import current_version
from registry.dates import today
from registry.forms import EditMixin, date_input, plain_helper, short_blank_choices, yes_no_as_radios
from registry.uploads import validate_pdf

# The empty option of the CRF's drop-downs (registry.forms.short_blank_choices): short, so it is never cut off.
CHOOSE = _("Choose…")

PATIENT_FIELDS = [
    "site",
    "enrolment_date",
    "full_name",
    "mrn",
    "date_of_birth",
    "sex",
    "primary_tumour",
    "primary_tumour_other",
    "lesion_character",
    "pathological_fracture",
    "denis_zones",
    "neurological_deficit",
    "symptom_onset_date",
    "imaging_date",
    "imaging_modality",
    "prior_radiotherapy",
    "prior_chemotherapy",
    "ecog",
    "death_date",
    "notes",
]


class PatientForm(EditMixin, forms.ModelForm):
    class Meta:
        model = Patient
        fields = PATIENT_FIELDS
        widgets = {
            f: date_input()
            for f in ("enrolment_date", "date_of_birth", "symptom_onset_date", "imaging_date", "death_date")
        } | {"notes": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        editing = self.instance.pk is not None
        self.setup_edit(editing)
        yes_no_as_radios(self)
        short_blank_choices(self, CHOOSE)
        # Labels that contain another label trip up "find the field labelled X" (people and test tools alike).
        self.fields["primary_tumour_other"].label = _("If other, which tumour")
        self.fields["imaging_modality"].label = _("Imaging modality")
        self.fields["sex"].choices = Patient.Sex.choices
        self.fields["sex"].widget = forms.RadioSelect(choices=Patient.Sex.choices)
        self.fields["ecog"] = forms.TypedChoiceField(
            label=_("ECOG performance status"),
            choices=[("", _("Not assessed")), *[(i, str(i)) for i in range(5)]],
            coerce=int,
            empty_value=None,
            required=False,
        )
        if editing:
            del self.fields["site"]  # the study ID carries the site code
        else:
            del self.fields["death_date"]
            sites = visible_sites(user)
            self.fields["site"].queryset = sites  # type: ignore[attr-defined]
            self.fields["site"].empty_label = None  # type: ignore[attr-defined]
            self.initial.update(enrolment_date=today(), site=sites.first())
        radios = [InlineRadios(f) for f in ("pathological_fracture", "neurological_deficit")]
        therapy = [InlineRadios(f) for f in ("prior_radiotherapy", "prior_chemotherapy")]
        self.helper = plain_helper(
            Row(*[Column(f, css_class="col-md-4") for f in ("site", "enrolment_date") if f in self.fields]),
            Row(Column("full_name", css_class="col-md-6"), Column("mrn", css_class="col-md-6")),
            Row(Column("date_of_birth", css_class="col-md-4"), Column(InlineRadios("sex"), css_class="col-md-4")),
            Row(Column("primary_tumour", css_class="col-md-4"), Column("primary_tumour_other", css_class="col-md-8")),
            Row(Column("lesion_character", css_class="col-md-4"), Column("denis_zones", css_class="col-md-8")),
            Row(*[Column(r, css_class="col-md-6") for r in radios]),
            Row(
                Column("symptom_onset_date", css_class="col-md-4"),
                Column("imaging_date", css_class="col-md-4"),
                Column("imaging_modality", css_class="col-md-4"),
            ),
            Row(*[Column(r, css_class="col-md-6") for r in therapy]),
            Row(
                Column("ecog", css_class="col-md-4"), *([Column("death_date", css_class="col-md-4")] if editing else [])
            ),
            "notes",
        )


class ConsentForm(forms.ModelForm):
    document = forms.FileField(
        label=_("Signed consent document (PDF)"),
        help_text=_("The scanned, signed form; its SHA-256 fingerprint is stored to detect any later change."),
        widget=forms.ClearableFileInput(attrs={"accept": "application/pdf"}),
    )

    class Meta:
        model = Consent
        fields = ["consent_version", "signed_date", "obtained_by", "scope_registry", "scope_future_contact"]
        widgets = {"signed_date": date_input()}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        yes_no_as_radios(self)
        short_blank_choices(self, CHOOSE)
        self.fields["consent_version"].queryset = ConsentVersion.objects.order_by("-effective_from")  # type: ignore[attr-defined]
        # Model values (None on a new record) win over field.initial, so propose via self.initial.
        self.initial.update(signed_date=today(), consent_version=current_version())
        self.fields["obtained_by"].help_text = _("Staff code or name of the person who took consent")
        self.helper = plain_helper(
            Row(Column("consent_version", css_class="col-md-4"), Column("signed_date", css_class="col-md-4")),
            "obtained_by",
            Row(
                Column(InlineRadios("scope_registry"), css_class="col-md-6"),
                Column(InlineRadios("scope_future_contact"), css_class="col-md-6"),
            ),
            "document",
        )

    def clean_document(self) -> Any:
        return validate_pdf(self.cleaned_data["document"])


class PatientSearchForm(forms.Form):
    q = forms.CharField(label=_("Search by study ID, MRN or name"), required=False)


class ConsentVersionForm(forms.ModelForm):
    reason_for_change = forms.CharField(
        label=_("Reason for change"), widget=forms.Textarea(attrs={"rows": 2}), required=False
    )

    class Meta:
        model = ConsentVersion
        fields = ["version", "effective_from", "effective_to", "blank_form"]
        widgets = {"effective_from": date_input(), "effective_to": date_input()}

    def clean_blank_form(self) -> Any:
        upload = self.cleaned_data.get("blank_form")
        # Only a new upload is checked (an unchanged field holds the stored file, False clears it).
        return validate_pdf(upload) if isinstance(upload, UploadedFile) else upload

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is None:
            del self.fields["reason_for_change"]
        else:
            # The label is printed on signed forms; a new text is a new version.
            self.fields["version"].disabled = True

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.instance.pk is None:
            return data
        if self.has_changed() and not (data.get("reason_for_change") or "").strip():
            self.add_error("reason_for_change", _("Give the reason for this change; it goes into the audit trail."))
        start, end = data.get("effective_from"), data.get("effective_to")
        if start:
            # Consents already signed to this version must stay inside its period.
            outside = self.instance.consents.filter(signed_date__lt=start)
            if end:
                outside = outside | self.instance.consents.filter(signed_date__gt=end)
            if n := outside.count():
                self.add_error(
                    None,
                    ngettext(
                        "%(count)d consent was signed to this version outside the new period; "
                        "a version's period cannot be changed to exclude it.",
                        "%(count)d consents were signed to this version outside the new period; "
                        "a version's period cannot be changed to exclude them.",
                        n,
                    )
                    % {"count": n},
                )
        return data


class WithdrawalForm(forms.Form):
    """Field names follow Consent, so the service's validation errors land on them."""

    withdrawal_scope = forms.ChoiceField(
        label=_("Scope of withdrawal"), choices=Consent.WithdrawalScope.choices, widget=forms.RadioSelect
    )
    withdrawn_date = forms.DateField(label=_("Date of withdrawal"), widget=date_input(), initial=today)
    withdrawal_reason = forms.CharField(label=_("Reason for withdrawal"), widget=forms.Textarea(attrs={"rows": 3}))
