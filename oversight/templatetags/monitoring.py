"""The monitoring parts other pages include: a case's queries, verification and signatures on the
patient page, and the open queries and long-missed visits at the top of the nurse's worklist."""

from typing import Any

from django import template
from django.utils.translation import gettext as _

from accounts.permissions import scope_to_sites
from oversight.models import DataQuery
from patients.models import CaseLock
from registry import dates

register = template.Library()

# The values offered as one-click "Raise a query" links on the patient page (any other through the form).
QUICK_FIELDS = {
    "patients.Patient": ["enrolment_date", "date_of_birth", "death_date", "ecog", "primary_tumour"],
    "procedures.Procedure": ["procedure_date", "levels_treated", "cement_volume_ml", "leakage", "discharge_date"],
    "outcomes.FollowUp": ["visit_date", "status", "vas", "odi_score", "no_opioids", "deviation_note"],
}


def _quick_links(record: Any, label: str) -> dict[str, Any]:
    key = record._meta.label
    names = {f.name: f for f in record._meta.concrete_fields}
    values = []
    for name in QUICK_FIELDS[key]:
        value = getattr(record, name)
        shown = record._get_FIELD_display(names[name]) if names[name].choices else value
        values.append({"field": name, "label": str(names[name].verbose_name), "value": shown})
    return {"record": f"{key}:{record.pk}", "label": label, "values": values}


@register.inclusion_tag("oversight/_case_monitoring.html", takes_context=True)
def case_monitoring(context: Any, patient: Any) -> dict[str, Any]:
    user = context["user"]
    queries = list(patient.queries.select_related("raised_by").order_by("state", "-raised_at"))
    from oversight.services import record_label, shown_label

    def label(record: Any) -> str:
        return shown_label(record_label(record))

    records = [
        *((f"patients.Patient:{patient.pk}", _("Patient")),),
        *((f"procedures.Procedure:{p.pk}", label(p)) for p in patient.procedures.all()),
        *((f"outcomes.FollowUp:{v.pk}", label(v)) for v in patient.followups.all()),
    ]
    return {
        "user": user,
        "patient": patient,
        "queries": queries,
        "open_count": sum(q.state != DataQuery.State.CLOSED for q in queries),
        "locks": list(patient.locks.select_related("signed_by", "unlocked_by")),
        "active_locks": [lk for lk in patient.locks.all() if lk.unlocked_at is None],
        "verifications": list(patient.verifications.select_related("verified_by")),
        "records": records,
        "quick": [
            _quick_links(patient, _("Patient")),
            *(_quick_links(p, label(p)) for p in patient.procedures.all()),
            *(_quick_links(v, label(v)) for v in patient.followups.all()),
        ],
        "procedures": list(patient.procedures.all()),
        "visits": list(patient.followups.all()),
        "csrf_token": context.get("csrf_token"),
        "may_raise": user.is_superuser or user.role in ("monitor", "investigator", "admin"),
        "may_verify": user.is_superuser or user.role in ("monitor", "admin"),
        "may_end": user.can_enter_data and not patient.follow_up_ended,
    }


@register.inclusion_tag("oversight/_worklist_monitoring.html", takes_context=True)
def worklist_monitoring(context: Any) -> dict[str, Any]:
    from oversight.monitoring_views import long_missed, missed_after_days

    user = context["user"]
    queries = scope_to_sites(
        DataQuery.objects.filter(state=DataQuery.State.OPEN).select_related("patient"), user, "patient__site"
    ).order_by("raised_at")
    return {
        "queries": list(queries[:100]),
        "query_total": queries.count(),
        "missed": long_missed(user, dates.today()),
        "missed_after": missed_after_days(),
        "csrf_token": context.get("csrf_token"),
    }


@register.filter
def shown_label(stored: str) -> str:
    """A query's or verification's stored (English) record label in the reader's language."""
    from oversight.services import shown_label as translate_label

    return translate_label(stored)


@register.simple_tag
def lock_of(patient: Any) -> Any:
    return CaseLock.objects.active().filter(patient=patient, timepoint="").first()
