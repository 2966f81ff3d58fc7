from typing import Any

from django import forms
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from exchange.exporter import DEIDENTIFIED, IDENTIFIED
from exchange.models import ExportLog
from exchange.services import may_export_identified, whole_year_problems
from outcomes.cohort import CohortFilterForm


class ExportForm(CohortFilterForm):
    """The dashboard's filters plus the shape, the statistics-package files and the level of the export."""

    shape = forms.ChoiceField(
        choices=ExportLog.Shape.choices,
        initial=ExportLog.Shape.BOTH,
        widget=forms.RadioSelect,
        label=gettext_lazy("Files"),
    )
    level = forms.ChoiceField(
        choices=ExportLog.Level.choices,
        initial=DEIDENTIFIED,
        widget=forms.RadioSelect,
        label=gettext_lazy("De-identification"),
    )
    packages = forms.BooleanField(
        required=False,
        initial=False,
        label=gettext_lazy("SPSS, Stata and R files"),
        help_text=gettext_lazy(
            "Also the same data as SPSS (.sav), Stata (.dta) and R files, built after the CSV files: for a"
            " large cohort the export then takes several times longer."
        ),
    )
    reason = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        label=gettext_lazy("Reason"),
        help_text=gettext_lazy("Required for an identified export; kept in the export log."),
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, user=user, **kwargs)
        for name in ("procedure_from", "procedure_to"):
            self.fields[name].help_text = _(
                "De-identified exports: whole calendar years only (from YYYY-01-01, to YYYY-12-31)."
            )
        if not may_export_identified(user):
            self.fields["level"].choices = [(DEIDENTIFIED, ExportLog.Level.DEIDENTIFIED.label)]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("level") == IDENTIFIED and not (data.get("reason") or "").strip():
            self.add_error("reason", _("Give the reason for an identified export; it is logged."))
        if data.get("level") == DEIDENTIFIED:
            for name, message in whole_year_problems(data).items():
                if name not in self.errors:
                    self.add_error(name, message)
        return data
