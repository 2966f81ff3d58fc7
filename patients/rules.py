"""Cross-record rules of one patient's case, checked in one place.

A change to an anchor date (enrolment, a procedure's date or number, the date
of death, a consent's withdrawal) can strand records that were valid when they
were saved: a "post" visit now before its procedure, a completed visit after
the death. Every write service (forms, the Django admin, imports, commands)
re-checks the whole case after its write, inside its transaction, so a change
that breaks the case is refused with the same messages everywhere and nothing
is written.

`case_problems` is pure: it takes the patient and her rows as objects (saved
or not: the importer checks a bundle's rows before writing them) and reads
them through duck typing, so this module, at the patients layer, needs no
import of procedures or outcomes.
"""

import datetime
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from registry.scoring import in_window, visit_window

NO_NEW_DATA_SCOPES = ("no_new_data", "remove_data")
TIMEPOINT_NAMES = {
    "baseline": gettext_lazy("Baseline"),
    "post": gettext_lazy("Post-procedure"),
    "w1": gettext_lazy("1 week"),
    "m1": gettext_lazy("1 month"),
    "m3": gettext_lazy("3 months"),
    "m6": gettext_lazy("6 months"),
    "m12": gettext_lazy("12 months"),
}


@dataclass(frozen=True)
class Problem:
    record: Any  # the object the problem is about
    field: str
    message: str


def _d(day: datetime.date) -> str:
    return day.isoformat()


def visit_name(visit: Any) -> str:
    return _("%(timepoint)s visit") % {"timepoint": TIMEPOINT_NAMES.get(visit.timepoint, visit.timepoint)}


def case_problems(
    patient: Any,
    *,
    procedures: Iterable[Any],
    visits: Iterable[Any],
    complications: Iterable[Any] = (),
    consents: Iterable[Any] = (),
) -> list[Problem]:
    """Every broken cross-record rule of one case (an empty list when the case is consistent)."""
    procedures, visits, complications, consents = list(procedures), list(visits), list(complications), list(consents)
    problems: list[Problem] = []
    enrolled, died = patient.enrolment_date, patient.death_date
    index = next((p.procedure_date for p in procedures if p.procedure_number == 1), None)
    if procedures and index is None:
        problems.append(
            Problem(min(procedures, key=lambda p: p.procedure_number), "procedure_number", _no_index(procedures))
        )
    for procedure in procedures:
        args = {"number": procedure.procedure_number, "day": _d(procedure.procedure_date)}
        if enrolled and procedure.procedure_date < enrolled:
            problems.append(
                Problem(
                    procedure,
                    "procedure_date",
                    _("Procedure %(number)s (%(day)s) is before the enrolment (%(enrolled)s).")
                    % {**args, "enrolled": _d(enrolled)},
                )
            )
        if died and procedure.procedure_date > died:
            problems.append(
                Problem(
                    procedure,
                    "procedure_date",
                    _("Procedure %(number)s (%(day)s) is after the patient's death (%(died)s).")
                    % {**args, "died": _d(died)},
                )
            )
        if index and procedure.procedure_number > 1 and procedure.procedure_date < index:
            problems.append(
                Problem(
                    procedure,
                    "procedure_date",
                    _("Procedure %(number)s (%(day)s) is before procedure 1 (%(index)s).")
                    % {**args, "index": _d(index)},
                )
            )
    for complication in complications:
        procedure = complication.procedure
        if complication.onset_date and complication.onset_date < procedure.procedure_date:
            problems.append(
                Problem(
                    complication,
                    "onset_date",
                    _("A complication of procedure %(number)s starts (%(onset)s) before the procedure (%(day)s).")
                    % {
                        "number": procedure.procedure_number,
                        "onset": _d(complication.onset_date),
                        "day": _d(procedure.procedure_date),
                    },
                )
            )
    stopped = [c.withdrawn_date for c in consents if c.withdrawn_date and c.withdrawal_scope in NO_NEW_DATA_SCOPES]
    for visit in visits:
        problems.extend(_visit_problems(visit, enrolled=enrolled, died=died, index=index, stopped=stopped))
    return problems


def _no_index(procedures: list[Any]) -> str:
    numbers = ", ".join(str(p.procedure_number) for p in sorted(procedures, key=lambda p: p.procedure_number))
    return _("The first procedure of a case is number 1 (the index procedure); this case has only %(numbers)s.") % {
        "numbers": numbers
    }


def _visit_problems(
    visit: Any,
    *,
    enrolled: datetime.date | None,
    died: datetime.date | None,
    index: datetime.date | None,
    stopped: list[datetime.date],
) -> list[Problem]:
    day, completed = visit.visit_date, visit.status == "completed"
    if day is None:
        return []
    out = []

    def args(**more: str) -> dict[str, str]:  # (named only for a problem: most visits have none)
        return {"visit": visit_name(visit), "day": _d(day), **more}

    if enrolled and day < enrolled:
        message = _("The %(visit)s (%(day)s) is before the enrolment (%(enrolled)s).")
        out.append(Problem(visit, "visit_date", message % args(enrolled=_d(enrolled))))
    if died and completed and day > died:
        message = _(
            "The patient died on %(died)s; the %(visit)s (%(day)s) cannot be a completed visit: "
            "record it as 'Patient deceased'."
        )
        out.append(Problem(visit, "visit_date", message % args(died=_d(died))))
    if completed and any(day > w for w in stopped):
        message = _("The %(visit)s (%(day)s) is after the consent was withdrawn from new data (%(withdrawn)s).")
        out.append(Problem(visit, "visit_date", message % args(withdrawn=_d(min(stopped)))))
    if index is None:
        return out
    if visit.timepoint != "baseline" and day < index:
        message = _("The %(visit)s (%(day)s) is before the index procedure (%(index)s).")
        out.append(Problem(visit, "visit_date", message % args(index=_d(index))))
    elif not in_window(visit.timepoint, index, day) and not (visit.deviation_note or "").strip():
        low, high = visit_window(visit.timepoint, index)
        message = _(
            "The %(visit)s (%(day)s) is outside its window (%(opens)s to %(closes)s, from the index "
            "procedure of %(index)s); explain the deviation in its note."
        )
        out.append(Problem(visit, "deviation_note", message % args(opens=_d(low), closes=_d(high), index=_d(index))))
    return out


def load_case(patient: Any) -> dict[str, list[Any]]:
    """The rows of a saved case, read afresh (inside the writer's transaction: what is about to commit)."""
    procedures = list(patient.procedures.model.objects.filter(patient_id=patient.pk))
    by_pk = {p.pk: p for p in procedures}
    complications = []
    if procedures:
        complication_model = patient.procedures.model.complications.rel.related_model
        for complication in complication_model.objects.filter(procedure_id__in=by_pk):
            complication.procedure = by_pk[complication.procedure_id]
            complications.append(complication)
    return {
        "procedures": procedures,
        "visits": list(patient.followups.model.objects.filter(patient_id=patient.pk)),
        "complications": complications,
        "consents": list(patient.consents.model.objects.filter(patient_id=patient.pk)),
    }


_deferred: ContextVar[dict[Any, Any] | None] = ContextVar("deferred_case_checks", default=None)


@contextmanager
def deferred_case_checks() -> Iterator[None]:
    """Check each case touched inside the block once, at its end (use inside the writer's transaction).

    For writes that are consistent only together, such as an import moving a
    procedure and the visits counted from it: every service's own `check_case`
    is postponed, and on leaving the block each case is checked as a whole.
    """
    pending: dict[Any, Any] = {}
    token = _deferred.set(pending)
    try:
        yield
    finally:
        _deferred.reset(token)
    for patient in pending.values():
        check_case(patient)


def check_case(patient: Any, *, editing: Any = None) -> None:
    """Raise ValidationError if the saved case breaks a cross-record rule.

    Problems about `editing` (the record the caller's form shows) are keyed by
    its field names, so they appear at the field; the others are listed at the
    top, naming the record they are about. Inside `deferred_case_checks` the
    check waits for the end of the block.
    """
    pending = _deferred.get()
    if pending is not None:
        pending[patient.pk] = patient
        return
    fresh = type(patient)._default_manager.get(pk=patient.pk)
    problems = case_problems(fresh, **load_case(fresh))
    if not problems:
        return
    errors: dict[str, list[str]] = {}
    for p in problems:
        same = editing is not None and type(p.record) is type(editing) and p.record.pk == editing.pk
        errors.setdefault(p.field if same else NON_FIELD_ERRORS, []).append(p.message)
    raise ValidationError(errors)


def _slot(record: Any) -> str:
    """Which list of a case a record belongs in (duck typing: this layer imports no clinical app above it)."""
    if hasattr(record, "timepoint"):
        return "visits"
    if hasattr(record, "procedure_number"):
        return "procedures"
    if hasattr(record, "cirse_grade"):
        return "complications"
    if hasattr(record, "scope_registry"):
        return "consents"
    return "patient"


def errors_for(record: Any, patient: Any) -> dict[str, list[str]]:
    """The cross-record problems `record` would have once saved as it is now, by field (for model clean()):
    the saved case is read, the record put in place of its saved version, and the rules run."""
    if patient is None or patient.pk is None:
        return {}  # a new patient's case is checked whole by its writer (the importer), not record by record
    slot = _slot(record)
    case = load_case(patient)
    if slot != "patient":
        rows = [r for r in case[slot] if record.pk is None or r.pk != record.pk]
        case[slot] = [*rows, record]
        if slot == "procedures":  # complications read their procedure's date
            for complication in case["complications"]:
                if complication.procedure_id == record.pk:
                    complication.procedure = record
    errors: dict[str, list[str]] = {}
    for p in case_problems(record if slot == "patient" else patient, **case):
        if p.record is record:
            errors.setdefault(p.field, []).append(p.message)
    return errors
