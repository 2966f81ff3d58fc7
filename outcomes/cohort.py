"""The cohort filters shared by the dashboard and the exports.

Population (summary.md): every enrolled patient of the user's sites except
those withdrawn with scope "remove data"; `approach` and the date range test
the index procedure (number 1).
"""

from typing import Any

from django import forms
from django.db.models import QuerySet

from accounts.models import Site, User
from accounts.permissions import scope_to_sites, visible_sites
from patients.models import Patient
from procedures.models import Procedure

FILTER_KEYS = ("site", "approach", "primary_tumour", "procedure_from", "procedure_to")


class CohortFilterForm(forms.Form):
    site = forms.ModelChoiceField(
        queryset=Site.objects.none(), required=False, to_field_name="code", empty_label="All sites"
    )
    approach = forms.ChoiceField(choices=[("", "All approaches"), *Procedure.Approach.choices], required=False)
    primary_tumour = forms.ChoiceField(choices=[("", "All tumours"), *Patient.PrimaryTumour.choices], required=False)
    procedure_from = forms.DateField(
        required=False, label="Index procedure from", widget=forms.DateInput(attrs={"type": "date"})
    )
    procedure_to = forms.DateField(
        required=False, label="Index procedure to", widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args: Any, user: User | None, **kwargs: Any) -> None:
        """`user=None`: every site (study-wide commands)."""
        super().__init__(*args, **kwargs)
        sites = Site.objects.all() if user is None else visible_sites(user)
        self.fields["site"].queryset = sites  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, end = data.get("procedure_from"), data.get("procedure_to")
        if start and end and start > end:
            self.add_error("procedure_to", "The end of the date range is before its start.")
        return data

    def as_filters(self) -> dict[str, str]:
        """The applied filters as plain strings (for JSON, manifests and links); empty ones left out."""
        out = {}
        for key in FILTER_KEYS:
            value = self.cleaned_data.get(key)
            if value:
                out[key] = value.code if isinstance(value, Site) else str(value)
        return out


def filtered_patients(
    user: User | None, filters: dict[str, Any], *, include_removed: bool = False
) -> QuerySet[Patient]:
    """Patients of the user's sites matching `filters` (values as cleaned by CohortFilterForm or strings).

    `user=None` means study-wide (management commands, which run without a user).
    Withdrawn "remove data" patients are left out unless `include_removed`.
    """
    qs = Patient.objects.all() if user is None else scope_to_sites(Patient.objects.all(), user)
    if not include_removed:
        qs = qs.in_analysis()
    site = filters.get("site")
    if site:
        qs = qs.filter(site__code=site.code if isinstance(site, Site) else site)
    if filters.get("primary_tumour"):
        qs = qs.filter(primary_tumour=filters["primary_tumour"])
    index = {}
    if filters.get("approach"):
        index["approach"] = filters["approach"]
    if filters.get("procedure_from"):
        index["procedure_date__gte"] = filters["procedure_from"]
    if filters.get("procedure_to"):
        index["procedure_date__lte"] = filters["procedure_to"]
    if index:
        qs = qs.filter(pk__in=Procedure.objects.filter(procedure_number=1, **index).values("patient_id"))
    return qs
