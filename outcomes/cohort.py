"""The analysis population and the cohort filters shared by the dashboard and the exports.

Population (summary.md): a patient of the user's sites is analysed (and
exported) only when her latest consent (by signed date, then id) consents to
registry data use and none of her consents is withdrawn with scope "remove
data". `approach` and the date range test the index procedure (number 1).
"""

from typing import Any

from django import forms
from django.db.models import BooleanField, Count, Exists, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils.translation import gettext_lazy as _

from accounts.models import Site, User
from accounts.permissions import scope_to_sites, visible_sites
from patients.models import CaseLock, Consent, Patient
from procedures.models import Procedure

FILTER_KEYS = ("site", "approach", "primary_tumour", "procedure_from", "procedure_to", "locked_only")
TRUE_STRINGS = ("true", "1", "yes", "on")


class CohortFilterForm(forms.Form):
    site = forms.ModelChoiceField(
        queryset=Site.objects.none(), required=False, to_field_name="code", empty_label=_("All sites"), label=_("Site")
    )
    approach = forms.ChoiceField(
        choices=[("", _("All approaches")), *Procedure.Approach.choices], required=False, label=_("Approach")
    )
    primary_tumour = forms.ChoiceField(
        choices=[("", _("All tumours")), *Patient.PrimaryTumour.choices], required=False, label=_("Primary tumour")
    )
    procedure_from = forms.DateField(
        required=False, label=_("Index procedure from"), widget=forms.DateInput(attrs={"type": "date"})
    )
    procedure_to = forms.DateField(
        required=False, label=_("Index procedure to"), widget=forms.DateInput(attrs={"type": "date"})
    )

    locked_only = forms.BooleanField(required=False, label=_("Only cases locked by an investigator's signature"))

    def __init__(self, *args: Any, user: User | None, **kwargs: Any) -> None:
        """`user=None`: every site (study-wide commands)."""
        super().__init__(*args, **kwargs)
        sites = Site.objects.all() if user is None else visible_sites(user)
        self.fields["site"].queryset = sites  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, end = data.get("procedure_from"), data.get("procedure_to")
        if start and end and start > end:
            self.add_error("procedure_to", _("The end of the date range is before its start."))
        return data

    def as_filters(self) -> dict[str, str]:
        """The applied filters as plain strings (for JSON, manifests and links); empty ones left out."""
        out = {}
        for key in FILTER_KEYS:
            value = self.cleaned_data.get(key)
            if value:
                out[key] = value.code if isinstance(value, Site) else str(value)
        return out


def _data_removed() -> Exists:
    """Some consent of the patient is withdrawn with "remove data" (whatever came after)."""
    return Exists(Consent.objects.filter(patient=OuterRef("pk"), withdrawal_scope=Consent.WithdrawalScope.REMOVE_DATA))


def _registry_consent_in_force() -> Coalesce:
    """The latest consent (signed date, then id) says yes to registry data use; False without any consent."""
    latest = Consent.objects.filter(patient=OuterRef("pk")).order_by("-signed_date", "-id").values("scope_registry")
    return Coalesce(Subquery(latest[:1]), Value(False), output_field=BooleanField())


def visible_patients(user: User | None) -> QuerySet[Patient]:
    """Every patient of the user's sites (`user=None`: study-wide), analysed or not."""
    return Patient.objects.all() if user is None else scope_to_sites(Patient.objects.all(), user)


def analysis_population(patients: QuerySet[Patient]) -> QuerySet[Patient]:
    """The patients of `patients` whose data may be analysed and exported (module docstring)."""
    return patients.alias(_consented=_registry_consent_in_force(), _removed=_data_removed()).filter(
        _consented=True, _removed=False
    )


def population_counts(user: User | None) -> dict[str, int]:
    """The patients the user may see who are left out of the population, in one query.

    `excluded_withdrawn`: withdrawn with "remove data"; `awaiting_consent`: no
    registry-use consent in force (and not removed). Counted over every visible
    patient whatever the filters: counting them per filter would reveal a
    removed patient's site, tumour, approach or procedure date.
    """
    counts = (
        visible_patients(user)
        .alias(_consented=_registry_consent_in_force(), _removed=_data_removed())
        .aggregate(
            excluded_withdrawn=Count("pk", filter=Q(_removed=True)),
            awaiting_consent=Count("pk", filter=Q(_removed=False, _consented=False)),
        )
    )
    return {"excluded_withdrawn": counts["excluded_withdrawn"], "awaiting_consent": counts["awaiting_consent"]}


def site_scope_sql(user: User | None, alias: str = "p") -> tuple[str, dict[str, Any]]:
    """SQL (" AND ...", params) keeping the rows of `alias` (a table with site_id) of the user's sites."""
    if user is None or user.sees_all_sites:
        return "", {}
    return (
        f" AND {alias}.site_id IN (SELECT us.site_id FROM accounts_user_sites us WHERE us.user_id = %(user)s)",
        {"user": user.pk},
    )


def analysis_rows_where(user: User | None, filters: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The WHERE clause (and its params) over `outcomes_analysisrow a` that `filtered_patients`
    means, in plain SQL on the rows the triggers keep (PostgreSQL): the population rules (the latest
    consent allows registry use, no consent removed the data), the user's sites, the filters. The
    dashboard reads its packed rows with it, the export its population."""
    where, params = site_scope_sql(user, "a")
    site = filters.get("site")
    if site:
        where += " AND a.site_id = (SELECT s.id FROM accounts_site s WHERE s.code = %(site)s)"
        params["site"] = site.code if isinstance(site, Site) else site
    if filters.get("primary_tumour"):
        where += " AND a.primary_tumour = %(tumour)s"
        params["tumour"] = filters["primary_tumour"]
    if filters.get("approach"):
        where += " AND a.approach = %(approach)s"
        params["approach"] = filters["approach"]
    if filters.get("procedure_from"):
        where += " AND a.index_date >= %(from)s::date"
        params["from"] = str(filters["procedure_from"])
    if filters.get("procedure_to"):
        where += " AND a.index_date <= %(to)s::date"
        params["to"] = str(filters["procedure_to"])
    if filters.get("locked_only") is True or str(filters.get("locked_only")).lower() in TRUE_STRINGS:
        where += " AND EXISTS (SELECT 1 FROM patients_caselock k WHERE k.patient_id = a.patient_id"
        where += " AND k.timepoint = '' AND k.unlocked_at IS NULL)"
    return "a.consented AND NOT a.removed" + where, params


def filtered_patients(user: User | None, filters: dict[str, Any]) -> QuerySet[Patient]:
    """The analysis population of the user's sites matching `filters` (values as cleaned by
    CohortFilterForm, or strings). `user=None` means study-wide (management commands)."""
    qs = analysis_population(visible_patients(user))
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
    locked = filters.get("locked_only")
    if locked is True or str(locked).lower() in TRUE_STRINGS:
        qs = qs.filter(pk__in=CaseLock.objects.active().filter(timepoint="").values("patient_id"))
    return qs
