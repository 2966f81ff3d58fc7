"""Writes of follow-up visits: the visit, its opioid rows and derived values, in one transaction."""

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from audit.services import save_audited, save_rows
from outcomes.models import FollowUp, Medication
from patients.rules import check_case
from patients.services import ensure_data_entry_allowed


def record_visit(
    *,
    visit: FollowUp,
    medications: Sequence[Medication] = (),
    removed: Sequence[Medication] = (),
    user: Any,
    reason: str = "",
    expected_version: int | None = None,
) -> FollowUp:
    """Create or update a visit and its opioid rows in place, and recompute ODI, opioid count and MME/day.

    Opioid rows with a primary key are updated only where they differ, rows
    without one are added, `removed` rows are deleted; rows not named are kept.
    The derived values come from the rows that remain, and are audited with the
    visit. An update needs `reason`; StaleEditError if the visit or a row was
    saved by someone else since it was loaded. The whole case must still hold
    together (patients.rules), or nothing is written.
    """
    ensure_data_entry_allowed(visit.patient, visit)
    with transaction.atomic():
        # The opioid list as it will be once written: derived values are computed
        # from it first, so the visit is saved (and audited) once, with them.
        final = {m.pk: m for m in visit.medications.all()} if visit.pk else {}
        for med in removed:
            final.pop(med.pk, None)
        final.update({m.pk: m for m in medications if m.pk is not None})
        kept = [*final.values(), *(m for m in medications if m.pk is None)]
        if kept and visit.status != FollowUp.Status.COMPLETED:
            raise ValidationError({"status": _("Opioids can only be recorded for a completed visit.")})
        visit.compute_derived(kept)
        save_audited(visit, user=user, reason=reason, expected_version=expected_version)
        for med in medications:
            med.followup = visit
        save_rows(rows=medications, removed=removed, user=user, reason=reason)
        check_case(visit.patient, editing=visit)
    return visit
