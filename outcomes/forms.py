import datetime
from typing import Any

from crispy_forms.bootstrap import InlineRadios
from crispy_forms.layout import HTML, Column, Fieldset, Row
from django import forms
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from outcomes.models import ODI_FIELDS, ODI_SECTION_TITLES, FollowUp, Medication
from patients.forms import CHOOSE
from registry.forms import ChildRowForm, EditMixin, child_formset, date_input, plain_helper, short_blank_choices


def odi_choices(statements: list[str] | None) -> list[tuple[Any, str]]:
    """Each score with its statement ("3 – I walk a few hundred metres"), as on the paper form.

    The statements come from outcomes.odi: the site's licensed text when installed, else the shipped
    placeholder (the licensed ODI wording is not shipped, domain.md); without them, the digits alone.
    """
    scores = [(i, f"{i} – {statements[i]}" if statements else str(i)) for i in range(6)]
    return [("", gettext("Not answered")), *scores]


class VisitForm(EditMixin, forms.ModelForm):
    class Meta:
        model = FollowUp
        fields = ["status", "visit_date", "deviation_note", "vas", *ODI_FIELDS, "no_opioids"]
        widgets = {
            "visit_date": date_input(),
            "status": forms.RadioSelect,
            "deviation_note": forms.Textarea(attrs={"rows": 2}),
            "vas": forms.NumberInput(attrs={"step": "0.1", "inputmode": "decimal"}),
        }

    def __init__(
        self,
        *args: Any,
        window: tuple[datetime.date, datetime.date] | None = None,
        odi_text: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.setup_edit(self.instance.pk is not None)
        sections = (odi_text or {}).get("sections") or [{}] * 10
        for number, name in enumerate(ODI_FIELDS, start=1):
            self.fields[name] = forms.TypedChoiceField(
                label=f"{number}. {ODI_SECTION_TITLES[number - 1]}",
                choices=odi_choices(sections[number - 1].get("statements")),
                coerce=int,
                empty_value=None,
                required=False,
                widget=forms.RadioSelect(attrs={"data-odi": ""}),
            )
        date = self.fields["visit_date"]
        if window:
            date.help_text = gettext("Window: %(opens)s to %(closes)s.") % {
                "opens": f"{window[0]:%Y-%m-%d}",
                "closes": f"{window[1]:%Y-%m-%d}",
            }
            date.widget.attrs.update(
                {"data-window-opens": f"{window[0]:%Y-%m-%d}", "data-window-closes": f"{window[1]:%Y-%m-%d}"}
            )
        else:
            date.help_text = _("The visit window is set by the date of the index procedure (not recorded yet).")
        self.fields["deviation_note"].help_text = _("Required when the visit date is outside its window.")
        self.helper = plain_helper(
            InlineRadios("status"),
            Row(Column("visit_date", css_class="col-sm-6 col-md-4"), Column("vas", css_class="col-sm-6 col-md-4")),
            HTML('<div id="window-warning" class="alert alert-warning py-1" role="status" hidden></div>'),
            "deviation_note",
            "no_opioids",
            Fieldset(
                _(
                    "Oswestry Disability Index (ODI 2.1a): for each section, the statement that fits best (scores 0 to 5)"
                ),
                HTML('{% if odi_notice %}<p class="form-text mt-0" id="odi-notice">{{ odi_notice }}</p>{% endif %}'),
                Row(*[Column(name, css_class="col-md-6") for name in ODI_FIELDS]),
                HTML('{% include "outcomes/_odi_score.html" %}'),
                css_id="odi",
            ),
        )


class MedicationForm(ChildRowForm):
    class Meta:
        model = Medication
        fields = ["drug", "daily_dose", "route"]
        widgets = {"daily_dose": forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["route"].choices = [("", _("Usual route (oral; patch for fentanyl)")), *Medication.Route.choices]
        self.fields["route"].help_text = _("MME/day is known only for oral doses and fentanyl patches.")
        short_blank_choices(self, CHOOSE)


MedicationFormSet = child_formset(FollowUp, MedicationForm, title=_("Opioid"), extra=2)
