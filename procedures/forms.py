from typing import Any

from crispy_forms.bootstrap import InlineRadios
from crispy_forms.layout import HTML, Column, Row
from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from patients.forms import CHOOSE
from procedures.models import Complication, Leakage, Procedure
from registry.forms import (
    ChildRowForm,
    EditMixin,
    child_formset,
    date_input,
    plain_helper,
    short_blank_choices,
    yes_no_as_radios,
)
from registry.scoring import MAJOR_COMPLICATIONS, MINOR_COMPLICATIONS

CIRSE_GRADES = [
    ("", "---------"),
    (1, _("1 – no therapy, no consequence")),
    (2, _("2 – overnight stay for observation")),
    (3, _("3 – therapy or prolonged stay (<48 h)")),
    (4, _("4 – prolonged stay (>48 h)")),
    (5, _("5 – permanent mild disability")),
    (6, _("6 – death")),
]


def row(*fields: str, width: str = "col-md") -> Row:
    return Row(*[Column(f, css_class=width) for f in fields])


class ProcedureForm(EditMixin, forms.ModelForm):
    class Meta:
        model = Procedure
        fields = [
            "procedure_date",
            "admission_date",
            "discharge_date",
            "operator",
            "approach",
            "guidance",
            "anaesthesia",
            "needle_gauge",
            "needle_count",
            "levels_treated",
            "cement_product",
            "cement_viscosity",
            "cement_volume_ml",
            "operation_time_min",
            "fluoroscopy_time_s",
            "dose_area_product_gycm2",
            "ct_dlp_mgycm",
            "technical_success",
        ]
        widgets = {f: date_input() for f in ("procedure_date", "admission_date", "discharge_date")}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setup_edit(self.instance.pk is not None)
        yes_no_as_radios(self)
        short_blank_choices(self, CHOOSE)
        self.fields["levels_treated"].widget.attrs["class"] = "form-check-input"
        self.helper = plain_helper(
            row("procedure_date", "admission_date", "discharge_date"),
            row("operator", "approach", "guidance", "anaesthesia"),
            row("needle_gauge", "needle_count"),
            HTML('{% include "procedures/_levels.html" %}'),
            row("cement_product", "cement_viscosity", "cement_volume_ml"),
            row("operation_time_min", "fluoroscopy_time_s", "dose_area_product_gycm2", "ct_dlp_mgycm"),
            InlineRadios("technical_success"),
        )


class LeakageForm(ChildRowForm):
    class Meta:
        model = Leakage
        fields = ["site", "symptomatic", "treatment_required"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        short_blank_choices(self, CHOOSE)


class ComplicationForm(ChildRowForm):
    class Meta:
        model = Complication
        fields = ["type", "onset_date", "cirse_grade", "severity", "resolved", "description"]
        widgets = {
            "onset_date": date_input(),
            "description": forms.TextInput(),
            "severity": forms.Select(attrs={"data-severity": ""}),
            "type": forms.Select(attrs={"data-complication-type": ""}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["cirse_grade"] = forms.TypedChoiceField(
            label=_("CIRSE grade"), choices=CIRSE_GRADES, coerce=int, empty_value=None
        )
        self.fields["severity"].label = _("Major or minor")
        self.fields["severity"].help_text = _("Derived for the study's named types; choose it for CSF leak and other.")
        short_blank_choices(self, CHOOSE)


class BaseLeakageFormSet:
    def clean(self) -> None:
        # Before the model formset's own uniqueness check, whose message names no site.
        if any(f.errors for f in self.forms):  # type: ignore[attr-defined]
            return
        sites = self.kept_values("site")  # type: ignore[attr-defined]
        twice = {s for s in sites if sites.count(s) > 1}
        if twice:
            names = ", ".join(str(Leakage.Site(s).label) for s in sorted(twice))
            raise ValidationError(gettext("%(sites)s: list each leakage site once.") % {"sites": names})
        super().clean()  # type: ignore[misc]


LeakageFormSet = type(
    "LeakageFormSet",
    (BaseLeakageFormSet, child_formset(Procedure, LeakageForm, title=_("Cement leakage"), extra=2)),
    {},
)
ComplicationFormSet = child_formset(Procedure, ComplicationForm, title=_("Complication"), extra=1)
SEVERITY_BY_TYPE = {t: "major" for t in MAJOR_COMPLICATIONS} | {t: "minor" for t in MINOR_COMPLICATIONS}
