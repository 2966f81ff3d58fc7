"""Writes of procedures with their leakage and complication rows, each audited, in one transaction."""

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.db import models, transaction

from audit.services import delete_audited, save_audited
from patients.services import ensure_data_entry_allowed
from procedures.models import Complication, Leakage, Procedure

LEAKAGE_FIELDS = ("site", "symptomatic", "treatment_required")
COMPLICATION_FIELDS = ("onset_date", "type", "severity", "cirse_grade", "resolved", "description")


def replace_children(
    *, existing: Sequence[models.Model], new: Sequence[models.Model], compare: Sequence[str], user: Any, reason: str
) -> None:
    """Make a record's child rows equal `new`; unchanged lists write nothing (no noise in the trail).

    Rows have no identity of their own on the form, so a changed list is
    replaced: every removed row and every added row gets its audit entry.
    """
    for row in new:
        if hasattr(row, "compute_derived"):
            row.compute_derived()  # derived columns take part in the comparison

    def plain(value: Any) -> str:
        return str(value.normalize()) if isinstance(value, Decimal) else repr(value)  # 30 == 30.000

    def keys(rows: Sequence[models.Model]) -> list[str]:
        return sorted(repr(tuple(plain(getattr(r, f)) for f in compare)) for r in rows)

    if keys(existing) == keys(new):
        return
    for row in existing:
        delete_audited(row, user=user, reason=reason or "Rows replaced")
    for row in new:
        save_audited(row, user=user, reason=reason)


def record_procedure(
    *,
    procedure: Procedure,
    leakages: Sequence[Leakage],
    complications: Sequence[Complication],
    user: Any,
    reason: str = "",
    expected_version: int | None = None,
) -> Procedure:
    """Create or update a procedure and replace its leakage and complication rows.

    `leakage` (yes/no) is derived from the rows so the two can never disagree.
    Raises StaleEditError if someone saved the procedure since `expected_version`.
    """
    ensure_data_entry_allowed(procedure.patient)
    with transaction.atomic():
        existing_leakages = list(procedure.leakages.all()) if procedure.pk else []
        existing_complications = list(procedure.complications.all()) if procedure.pk else []
        procedure.leakage = bool(leakages)
        save_audited(procedure, user=user, reason=reason, expected_version=expected_version)
        for row in [*leakages, *complications]:
            row.procedure = procedure
        replace_children(existing=existing_leakages, new=leakages, compare=LEAKAGE_FIELDS, user=user, reason=reason)
        replace_children(
            existing=existing_complications, new=complications, compare=COMPLICATION_FIELDS, user=user, reason=reason
        )
    return procedure
