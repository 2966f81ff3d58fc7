"""The audit trail as people read it: records by their names ("Follow-up visit", not
outcomes.FollowUp), fields by their labels, values formatted (choice labels, numbers by
`registry.measures`, dates, the study ID and site code a foreign key points at), and a
field filter that keeps only that field's changes. Used by the trail pages (oversight) and
the patient page's change history (outcomes); the models are looked up by label in the app
registry, so the audit layer imports none of the apps above it.

The trail stores raw values (`audit.services.row_values`); this is display only. The
trail CSV keeps the raw values, complete. Foreign keys are named with one query per
model pointed at, whatever the number of events.
"""

import datetime
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models import Q
from django.utils import formats
from django.utils.text import capfirst
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from audit.models import AuditEvent
from registry import measures
from registry.fields import MultiChoiceField, split_codes

# The records' names where the model itself has none of its own ("follow up" from the class name).
RECORD_NAMES = {
    "accounts.Site": _("Site"),
    "accounts.User": _("User"),
    "patients.ConsentVersion": _("Consent form version"),
    "patients.Patient": _("Patient"),
    "patients.Consent": _("Consent record"),
    "patients.CaseLock": _("Case lock"),
    "procedures.Procedure": _("Procedure"),
    "procedures.Leakage": _("Cement leakage"),
    "procedures.Complication": _("Complication"),
    "outcomes.FollowUp": _("Follow-up visit"),
    "outcomes.Medication": _("Opioid"),
    "outcomes.OdiText": _("ODI text"),
    "oversight.DataQuery": _("Data query"),
    "oversight.QueryMessage": _("Query message"),
    "oversight.Verification": _("Source verification"),
}
# How a row a foreign key points at is named: patients by study ID, sites by code, users by user name.
FOREIGN_NAMES = {
    "patients.Patient": lambda obj: obj.study_id,
    "accounts.Site": lambda obj: obj.code,
    "accounts.User": lambda obj: obj.get_username(),
}


# The keys of an event's details (exports, reads, searches, API calls, self-reports).
DETAIL_NAMES = {
    "page": _("Page"),
    "ip": _("IP address"),
    "user_agent": _("Browser"),
    "term": _("Search term"),
    "filters": _("Filters"),
    "document_matches_sha256": _("Document matches its SHA-256"),
    "api_token": _("API token"),
    "path": _("Address"),
    "query": _("Query"),
    "status": _("Status"),
    "name": _("Name"),
    "export_log": _("Export"),
    "level": _("Level"),
    "shape": _("Shape"),
    "counts": _("Rows"),
    "updated": _("Updated"),
    "removed": _("Removed"),
    "query_message": _("Query message"),
    "entered_by": _("Entered by"),
    "link": _("Self-report link"),
    "timepoint": _("Visit"),
    "correction": _("Correction"),
    "review": _("Review"),
    "corrections": _("Corrections"),
}


@dataclass(frozen=True)
class Change:
    field: str  # the stored name, for the CSV reader and the title attribute
    label: str
    old: str  # "" = empty
    new: str


@dataclass
class Entry:
    event: AuditEvent
    record: str  # the record's name, "" for an event about no record (a log-in)
    changes: list[Change] = field(default_factory=list)

    @property
    def details(self) -> list[tuple[str, str]]:
        """The event's details (what was exported, which page was read) by their names."""
        return [(str(DETAIL_NAMES.get(k, k)), _detail(v)) for k, v in (self.event.extra or {}).items()]


def _detail(value: Any) -> str:
    if isinstance(value, bool):
        return gettext("Yes") if value else gettext("No")
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)


def _meta(label: str) -> Any:
    try:
        return apps.get_model(label)._meta if label else None
    except (LookupError, ValueError):
        return None


def record_name(label: str) -> str:
    """The readable name of a model label ("outcomes.FollowUp" -> "Follow-up visit")."""
    meta = _meta(label)
    if meta is not None and "verbose_name" in meta.original_attrs:
        return str(capfirst(meta.verbose_name))
    if label in RECORD_NAMES:
        return str(RECORD_NAMES[label])
    return str(capfirst(meta.verbose_name)) if meta is not None else label


def field_names(text: str) -> set[str]:
    """The stored field names a filter text means: a field name or a field's label, any case."""
    text = text.strip()
    if not text:
        return set()
    wanted = text.casefold()
    names = {text}
    for model in apps.get_models():
        for f in model._meta.concrete_fields:
            if f.name.casefold() == wanted or str(getattr(f, "verbose_name", "")).casefold() == wanted:
                names.add(f.name)
    return names


def field_filter(text: str) -> Q | None:
    """Events that changed one of the fields `text` names (a create that left it empty changed nothing)."""
    names = field_names(text)
    if not names:
        return None
    query = Q()
    for name in sorted(names):
        unchanged = Q(**{f"changes__{name}": [None, None]}) | Q(**{f"changes__{name}": [None, ""]})
        query |= Q(changes__has_key=name) & ~unchanged
    return query


def _pairs(event: AuditEvent) -> Iterable[tuple[str, Any, Any]]:
    for name, pair in (event.changes or {}).items():
        old, new = pair if isinstance(pair, list) and len(pair) == 2 else (None, pair)
        yield name, old, new


def _lookup(meta: Any, name: str) -> Any:
    try:
        return meta.get_field(name) if meta is not None else None
    except FieldDoesNotExist:
        return None


def _field(meta: Any, name: str) -> models.Field | None:
    """The model field a change names; None for a name that is no field or a reverse relation (rows of
    another model, such as a self-report's medications: they have no value of their own to format)."""
    f = _lookup(meta, name)
    return None if isinstance(f, models.ForeignObjectRel) else f


def _label(meta: Any, name: str) -> tuple[models.Field | None, str]:
    """The field a change names and its label; a reverse relation reads as the related records' name."""
    f = _lookup(meta, name)
    if isinstance(f, models.ForeignObjectRel):
        return None, str(capfirst(f.related_model._meta.verbose_name_plural))
    return f, str(capfirst(f.verbose_name)) if f is not None else name


def _foreign_names(events: list[AuditEvent]) -> dict[tuple[str, str], str]:
    """{(model label, pk): name} of every row the events' foreign keys point at: one query per model."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for event in events:
        meta = _meta(event.model)
        for name, old, new in _pairs(event):
            f = _field(meta, name)
            if f is not None and f.is_relation and f.many_to_one:
                wanted[f.related_model._meta.label].update(str(v) for v in (old, new) if v not in (None, ""))
    names = {}
    for label, pks in wanted.items():
        model = apps.get_model(label)
        name = FOREIGN_NAMES.get(label, str)
        keys = [pk for pk in pks if pk.isdigit()]  # every audited model has an integer key
        if not keys:
            continue
        parents = [f.name for f in model._meta.concrete_fields if f.many_to_one and not f.null]
        rows = model._default_manager.filter(pk__in=keys)
        if parents:  # str() of a row may name its parent
            rows = rows.select_related(*parents)
        names.update({(label, str(obj.pk)): name(obj) for obj in rows})
    return names


def _date(value: Any) -> str:
    try:
        return formats.date_format(datetime.date.fromisoformat(str(value)))
    except ValueError:
        return str(value)


def _datetime(value: Any) -> str:
    try:
        moment = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.UTC)
    return f"{formats.date_format(moment, 'Y-m-d H:i:s')} UTC"


def value_text(f: models.Field | None, value: Any, foreign: dict[tuple[str, str], str]) -> str:
    """One stored value as a person reads it; "" for empty."""
    if value is None or value == "":
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    if f is None:
        return str(value)
    if f.is_relation and f.many_to_one:
        return foreign.get((f.related_model._meta.label, str(value)), gettext("#%(id)s (deleted)") % {"id": value})
    if isinstance(f, MultiChoiceField):
        labels = dict(f.options)
        return ", ".join(str(labels.get(code, code)) for code in split_codes(str(value)))
    if f.choices:
        labels = dict(f.flatchoices)
        return str(labels.get(value, value))
    if isinstance(f, models.BooleanField):
        return gettext("Yes") if value else gettext("No")
    if isinstance(f, models.DateTimeField):
        return _datetime(value)
    if isinstance(f, models.DateField):
        return _date(value)
    if isinstance(f, (models.DecimalField, models.FloatField, models.IntegerField)):
        exact = measures.number(value)  # the trail keeps decimals as text: "7.0"
        return measures.record(value if exact is None else exact, f.name)
    return str(value)


def readable(events: Iterable[AuditEvent], fields: str = "") -> list[Entry]:
    """The events with their changes as people read them; `fields` (a filter's text) keeps only those fields.

    Unchanged pairs (a field a create left empty or blank) are left out: the CSV keeps them."""
    events = list(events)
    only = field_names(fields)
    foreign = _foreign_names(events)
    entries = []
    for event in events:
        meta = _meta(event.model)
        entry = Entry(event, record_name(event.model) if event.model else "")
        for name, old, new in _pairs(event):
            if (only and name not in only) or old == new or (old in (None, "") and new in (None, "")):
                continue
            f, label = _label(meta, name)
            entry.changes.append(Change(name, label, value_text(f, old, foreign), value_text(f, new, foreign)))
        entries.append(entry)
    return entries
