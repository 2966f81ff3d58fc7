"""Writes of procedures with their leakage and complication rows, each audited, in one transaction."""

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from audit.services import save_audited, save_rows
from patients.rules import check_case
from patients.services import ensure_data_entry_allowed
from procedures.models import Complication, Leakage, Procedure


def record_procedure(
    *,
    procedure: Procedure,
    leakages: Sequence[Leakage] = (),
    complications: Sequence[Complication] = (),
    removed: Sequence[Leakage | Complication] = (),
    user: Any,
    reason: str = "",
    expected_version: int | None = None,
) -> Procedure:
    """Create or update a procedure and its leakage and complication rows in place.

    Rows with a primary key are updated only where they differ (each from the
    version it was loaded at), rows without one are added, `removed` rows are
    deleted; rows of the procedure not named are kept. The `leakage` flag must
    agree with the rows that remain (the CRF: if yes, one row per site), and the
    whole case must still hold together (patients.rules); otherwise nothing is
    written. StaleEditError if someone saved the procedure or a row meanwhile.
    """
    ensure_data_entry_allowed(procedure.patient)
    with transaction.atomic():
        save_audited(procedure, user=user, reason=reason, expected_version=expected_version)
        for row in [*leakages, *complications]:
            row.procedure = procedure
        save_rows(rows=[*leakages, *complications], removed=removed, user=user, reason=reason)
        remaining = procedure.leakages.count()
        if procedure.leakage != bool(remaining):
            answer = _("yes") if procedure.leakage else _("no")
            message = ngettext(
                "Cement leakage is '%(answer)s' but %(count)d leakage site row remains: list one row per leakage "
                "site, or none when there is no leakage.",
                "Cement leakage is '%(answer)s' but %(count)d leakage site rows remain: list one row per leakage "
                "site, or none when there is no leakage.",
                remaining,
            )
            raise ValidationError({"leakage": message % {"answer": answer, "count": remaining}})
        check_case(procedure.patient, editing=procedure)
    return procedure
