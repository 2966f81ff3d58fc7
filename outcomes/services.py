"""Writes of follow-up visits: the visit, its opioid rows and derived values, in one transaction."""

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from audit.services import save_audited
from outcomes.models import FollowUp, Medication
from patients.services import ensure_data_entry_allowed
from procedures.services import replace_children


def record_visit(
    *,
    visit: FollowUp,
    medications: Iterable[tuple[str, Decimal]],
    user: Any,
    reason: str = "",
    expected_version: int | None = None,
) -> FollowUp:
    """Create or update a visit, replace its opioid list and recompute ODI, opioid count and MME/day.

    `medications` are (drug code, daily dose) pairs. An update needs `reason`;
    StaleEditError if the visit was saved by someone else since `expected_version`.
    """
    ensure_data_entry_allowed(visit.patient)
    meds = [(drug, Decimal(str(dose))) for drug, dose in medications]
    if meds and visit.status != FollowUp.Status.COMPLETED:
        raise ValidationError({"status": "Opioids can only be recorded for a completed visit."})
    with transaction.atomic():
        existing = list(visit.medications.all()) if visit.pk else []
        visit.compute_derived(meds)  # before the save, so the derived values are audited with it
        save_audited(visit, user=user, reason=reason, expected_version=expected_version)
        rows = [Medication(followup=visit, drug=drug, daily_dose=dose) for drug, dose in meds]
        replace_children(existing=existing, new=rows, compare=("drug", "daily_dose"), user=user, reason=reason)
    return visit
