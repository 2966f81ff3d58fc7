"""Starting an export: the permission rules, the log entry and the audit entry."""

import datetime
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from audit.models import AuditEvent
from audit.services import record_event
from exchange.exporter import IDENTIFIED, ExportResult, ExportSpec, export_zip
from exchange.models import ExportLog
from registry.replica import reporting_stream


def whole_year_problems(filters: dict[str, Any]) -> dict[str, str]:
    """Why the date filters are too narrow for a de-identified export ({field: message}; empty when fine).

    A de-identified export gives dates as days since the index procedure; a
    range narrower than whole calendar years would bound the index date and turn
    those offsets back into calendar dates. So the index procedure range must
    start on 1 January and end on 31 December.
    """
    problems = {}
    for name, (month, day), label in (
        ("procedure_from", (1, 1), _("start on 1 January (YYYY-01-01)")),
        ("procedure_to", (12, 31), _("end on 31 December (YYYY-12-31)")),
    ):
        value = filters.get(name)
        if not value:
            continue
        if isinstance(value, str):
            try:
                value = datetime.date.fromisoformat(value)
            except ValueError:
                problems[name] = _("%(field)s: not a date written YYYY-MM-DD.") % {"field": name}
                continue
        if (value.month, value.day) != (month, day):
            problems[name] = _(
                "%(field)s: a de-identified export filters the index procedure by whole calendar years only, "
                "so the range must %(rule)s; %(date)s is narrower. Narrower ranges would reveal dates."
            ) % {"field": name, "rule": label, "date": value.isoformat()}
    return problems


def may_export_identified(user: Any) -> bool:
    """Only registry admins: investigators never see identifiers, nurses do not export."""
    return user is None or bool(getattr(user, "is_registry_admin", False))


def start_export(spec: ExportSpec, *, via: str = "web") -> Iterator[bytes]:
    """Check, log (export log and audit trail), then return the zip stream."""
    if spec.level == IDENTIFIED:
        if not may_export_identified(spec.user):
            raise PermissionDenied(_("Identified exports are for registry administrators only."))
        if not spec.reason.strip():
            raise ValidationError({"reason": _("An identified export needs a reason (it is logged).")})
    else:
        problems = whole_year_problems(spec.filters)
        if problems:
            raise ValidationError(problems)
    filters = {k: str(v) for k, v in spec.filters.items() if v}
    log = ExportLog.objects.create(
        user=spec.user if getattr(spec.user, "is_authenticated", False) else None,
        username=spec.username,
        level=spec.level,
        shape=spec.shape,
        filters=filters,
        reason=spec.reason,
        via=via,
    )
    record_event(
        action=AuditEvent.Action.EXPORT,
        user=spec.user,
        username=spec.username,
        reason=spec.reason,
        extra={"export_log": log.pk, "level": spec.level, "shape": spec.shape, "filters": filters},
    )

    def finished(result: ExportResult) -> None:
        ExportLog.objects.filter(pk=log.pk).update(row_counts=result.row_counts, completed_at=timezone.now())

    # the rows from the reporting database (the replica if any); the log's writes above and in
    # `finished` go to the primary (registry/replica.py)
    return _in_english(reporting_stream(export_zip(spec, on_done=finished)))


def _in_english(stream: Iterator[bytes]) -> Iterator[bytes]:
    """The files are the same whatever the language of the page that asked for them: English labels, codes
    as in the dictionary (only the page around the export is translated)."""
    with translation.override("en"):
        yield from stream
