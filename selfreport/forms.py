from decimal import Decimal

from django import forms
from django.utils.translation import gettext_lazy as _

from outcomes.models import Medication, Timepoint
from selfreport.services import SELF_REPORT_TIMEPOINTS

MED_ROWS = 4
DRUG_CHOICES = [("", _("— none —")), *Medication.Drug.choices]


class AnswersForm(forms.Form):
    """The patient's answers (and the nurse's reviewed copy): VAS, ten ODI sections (blank = skipped), opioids."""

    vas = forms.DecimalField(
        label=_("Pain now, from 0 (no pain) to 10 (worst pain)"),
        min_value=Decimal(0),
        max_value=Decimal(10),
        max_digits=3,
        decimal_places=1,
    )

    def __init__(self, *args: object, odi_text: dict | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        sections = (odi_text or {}).get("sections") or [
            {"title": f"ODI {i}", "statements": [str(s) for s in range(6)]} for i in range(1, 11)
        ]
        for i, section in enumerate(sections, 1):
            self.fields[f"odi_q{i}"] = forms.TypedChoiceField(
                label=section["title"],
                choices=[(str(n), text) for n, text in enumerate(section["statements"])]
                + [("", _("Skip this section"))],
                coerce=int,
                empty_value=None,
                required=False,
                widget=forms.RadioSelect,
            )
        for r in range(1, MED_ROWS + 1):
            self.fields[f"drug_{r}"] = forms.ChoiceField(
                label=_("Opioid %(n)s") % {"n": r}, choices=DRUG_CHOICES, required=False
            )
            self.fields[f"dose_{r}"] = forms.DecimalField(
                label=_("Daily dose %(n)s (mg a day; patches: mcg an hour)") % {"n": r},
                min_value=Decimal(0),
                max_digits=10,
                decimal_places=3,
                required=False,
            )

    def clean(self) -> dict:
        data = super().clean()
        for r in range(1, MED_ROWS + 1):
            drug, dose = data.get(f"drug_{r}"), data.get(f"dose_{r}")
            if drug and dose is None and f"dose_{r}" not in self.errors:
                self.add_error(f"dose_{r}", _("Give the daily dose of this opioid."))
            if dose is not None and not drug:
                self.add_error(f"drug_{r}", _("Choose the opioid this dose is for."))
        return data

    def odi(self) -> list[int | None]:
        return [self.cleaned_data.get(f"odi_q{i}") for i in range(1, 11)]

    def medications(self) -> list[tuple[str, Decimal]]:
        d = self.cleaned_data
        return [(d[f"drug_{r}"], d[f"dose_{r}"]) for r in range(1, MED_ROWS + 1) if d.get(f"drug_{r}")]

    def odi_fields(self) -> list[forms.BoundField]:
        return [self[f"odi_q{i}"] for i in range(1, 11)]

    def med_rows(self) -> list[tuple[forms.BoundField, forms.BoundField]]:
        return [(self[f"drug_{r}"], self[f"dose_{r}"]) for r in range(1, MED_ROWS + 1)]


class ReviewForm(AnswersForm):
    reason = forms.CharField(
        label=_("Reason for changing the patient's answers"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Needed when you change any answer; it goes into the audit trail."),
    )


class SendLinkForm(forms.Form):
    study_id = forms.CharField(label=_("Study ID"), max_length=32)
    timepoint = forms.ChoiceField(label=_("Visit"), choices=[(t, Timepoint(t).label) for t in SELF_REPORT_TIMEPOINTS])
    send_email = forms.BooleanField(label=_("Also e-mail the link to the patient"), required=False, initial=True)


class ReasonForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), widget=forms.Textarea(attrs={"rows": 2}))
