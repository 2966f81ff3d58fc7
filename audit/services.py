"""The one way to write the audit trail. Clinical services call `record_*`
inside their own transaction, so a change and its audit entry land together."""

import datetime
import decimal
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import models, transaction
from django.db.models.deletion import Collector
from django.utils.translation import gettext

from audit.models import AuditEvent
from registry.errors import StaleEditError


def _plain(value: Any) -> Any:
    """A JSON-safe copy of a field value."""
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, models.Model):
        return str(value.pk)
    if hasattr(value, "name") and hasattr(value, "storage"):  # FieldFile
        return value.name or ""
    return value


def has_version_token(instance: models.Model) -> bool:
    """Whether `version` is the optimistic-concurrency counter (ConsentVersion.version is a label)."""
    try:
        field = instance._meta.get_field("version")
    except FieldDoesNotExist:
        return False
    return isinstance(field, models.PositiveIntegerField) and not field.editable


def _field_value(field: models.Field, value: Any) -> Any:
    """A field's value as the database keeps it, so 3, "3" and 3.0 compare equal for a one-decimal field."""
    if value is None or value == "":
        return value
    if isinstance(field, models.DecimalField):
        try:
            value = decimal.Decimal(str(value))
        except decimal.InvalidOperation:
            return value
        return value.quantize(decimal.Decimal(1).scaleb(-field.decimal_places))
    if isinstance(field, models.FloatField):
        return float(value)
    return value


def row_values(instance: models.Model, exclude: Iterable[str] = ("id", "version")) -> dict[str, Any]:
    """Every concrete field of `instance` as plain, normalised values (FKs by their id), for the trail
    and for telling a real change from a re-typed value; the concurrency counter left out."""
    skip = set(exclude)
    if not has_version_token(instance):
        skip.discard("version")
    return {
        f.name: _plain(_field_value(f, getattr(instance, f.attname)))
        for f in instance._meta.concrete_fields
        if f.name not in skip
    }


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """Fields whose value changed, as {field: [old, new]}."""
    return {k: [before.get(k), v] for k, v in after.items() if before.get(k) != v}


def _actor(user: Any) -> tuple[Any, str]:
    if user is None or not getattr(user, "is_authenticated", False):
        return None, ""
    return user, user.get_username()


def change_event(
    *,
    action: str,
    instance: models.Model,
    user: Any,
    changes: dict[str, list[Any]],
    reason: str = "",
    study_id: str = "",
    site_code: str = "",
    extra: dict[str, Any] | None = None,
) -> AuditEvent:
    """An unsaved trail entry about one row (the importer saves many at once)."""
    actor, username = _actor(user)
    return AuditEvent(
        user=actor,
        username=username,
        action=action,
        model=instance._meta.label,
        object_pk=str(instance.pk),
        object_repr=str(instance)[:200],
        study_id=study_id,
        site_code=site_code,
        changes=changes,
        reason=reason,
        extra=extra or {},
    )


def record_change(**kwargs: Any) -> AuditEvent:
    """Save a trail entry about one row (arguments as `change_event`)."""
    event = change_event(**kwargs)
    event.save()
    return event


def record_created(
    instance: models.Model, *, user: Any, reason: str = "", study_id: str = "", site_code: str = ""
) -> AuditEvent:
    after = row_values(instance)
    return record_change(
        action=AuditEvent.Action.CREATE,
        instance=instance,
        user=user,
        changes={k: [None, v] for k, v in after.items()},
        reason=reason,
        study_id=study_id,
        site_code=site_code,
    )


def record_updated(
    instance: models.Model, before: dict[str, Any], *, user: Any, reason: str, study_id: str = "", site_code: str = ""
) -> AuditEvent | None:
    """Record what changed since `before` (from `row_values`); nothing when nothing changed."""
    changes = diff(before, row_values(instance))
    if not changes:
        return None
    return record_change(
        action=AuditEvent.Action.UPDATE,
        instance=instance,
        user=user,
        changes=changes,
        reason=reason,
        study_id=study_id,
        site_code=site_code,
    )


def record_deleted(
    instance: models.Model, *, user: Any, reason: str, study_id: str = "", site_code: str = ""
) -> AuditEvent:
    before = row_values(instance)
    return record_change(
        action=AuditEvent.Action.DELETE,
        instance=instance,
        user=user,
        changes={k: [v, None] for k, v in before.items()},
        reason=reason,
        study_id=study_id,
        site_code=site_code,
    )


def record_event(
    *, action: str, user: Any = None, username: str = "", reason: str = "", extra: dict[str, Any] | None = None
) -> AuditEvent:
    """A trail entry that is not a row change: log-ins, exports, imports."""
    actor, name = _actor(user)
    return AuditEvent.objects.create(
        user=actor, username=name or username, action=action, reason=reason, extra=extra or {}
    )


def owner_keys(instance: models.Model) -> tuple[str, str]:
    """(study_id, site code) of the patient a clinical row belongs to, for the trail."""
    obj: Any = instance
    while obj is not None and obj._meta.label != "patients.Patient":
        obj = next((getattr(obj, a) for a in ("patient", "procedure", "followup") if hasattr(obj, a)), None)
    if obj is None:
        return "", ""
    return obj.study_id, obj.site.code


def save_audited(instance: models.Model, *, user: Any, reason: str = "", expected_version: int | None = None) -> bool:
    """Create or update a clinical row with its audit entry, in one transaction; True if anything was written.

    Validates with `full_clean`. An update of a versioned row must say which
    `version` the editor loaded: if the row moved on since, `StaleEditError`
    is raised and nothing is written. An update that changes no value (after
    normalisation: 3.0 equals 3) writes nothing, bumps nothing and needs no
    reason; a real change needs a reason for change.
    """

    study_id, site_code = owner_keys(instance)
    with transaction.atomic():
        if instance.pk is None:
            instance.full_clean()
            instance.save()
            record_created(instance, user=user, reason=reason, study_id=study_id, site_code=site_code)
            return True
        try:
            current = type(instance)._default_manager.select_for_update().get(pk=instance.pk)
        except type(instance).DoesNotExist:
            raise StaleEditError(instance) from None  # deleted by someone else meanwhile
        has_version = has_version_token(current)
        if has_version:
            if expected_version is None:
                raise TypeError(f"An update of {instance._meta.label} must give the version the editor loaded.")
            if current.version != expected_version:
                raise StaleEditError(instance)
        instance.full_clean()
        before = row_values(current)
        if not diff(before, row_values(instance)):
            if has_version:
                instance.version = current.version  # type: ignore[attr-defined]
            return False
        if not reason.strip():
            raise ValidationError({"reason": gettext("Give the reason for this change; it goes into the audit trail.")})
        if has_version:
            instance.version = current.version + 1  # type: ignore[attr-defined]
        instance.save()
        record_updated(instance, before, user=user, reason=reason, study_id=study_id, site_code=site_code)
        return True


def save_rows(*, rows: Iterable[models.Model], removed: Iterable[models.Model] = (), user: Any, reason: str) -> int:
    """Write a record's child rows in place (leakages, complications, opioids); the number of rows written.

    A row with a primary key is updated only where its values differ, and only
    from the `version` it was loaded at (StaleEditError otherwise); a row without
    one is created; `removed` rows are deleted. Each write is one audit entry of
    one row, so changing one dose shows as that one change in the trail.
    """
    written = 0
    with transaction.atomic():
        for row in removed:
            if row.pk is not None:
                current = type(row)._default_manager.select_for_update().filter(pk=row.pk).first()
                if current is None or (has_version_token(row) and current.version != row.version):
                    raise StaleEditError(row)
                delete_audited(current, user=user, reason=reason or "Row removed")
                written += 1
        for row in rows:
            loaded = getattr(row, "version", None) if row.pk is not None else None
            written += save_audited(row, user=user, reason=reason, expected_version=loaded)
    return written


def delete_audited(instance: models.Model, *, user: Any, reason: str) -> None:
    """Delete a row and everything under it; the deleted values stay in the trail."""
    if not reason.strip():
        raise ValidationError({"reason": gettext("Give the reason for deleting this record.")})
    study_id, site_code = owner_keys(instance)
    with transaction.atomic():
        collector = Collector(using="default")
        collector.collect([instance])
        doomed = [obj for objs in collector.data.values() for obj in objs]
        doomed += [obj for queryset in collector.fast_deletes for obj in queryset]  # cascades Django deletes in bulk
        for obj in doomed:
            record_deleted(obj, user=user, reason=reason, study_id=study_id, site_code=site_code)
        instance.delete()


def record_access(
    *, action: str, instance: models.Model, user: Any, reason: str = "", extra: dict[str, Any] | None = None
) -> AuditEvent:
    """A trail entry about one row that changes nothing in it (e.g. a consent PDF viewed)."""
    study_id, site_code = owner_keys(instance)
    return record_change(
        action=action,
        instance=instance,
        user=user,
        changes={},
        reason=reason,
        study_id=study_id,
        site_code=site_code,
        extra=extra,
    )


def record_read(request: Any, instance: models.Model, page: str) -> None:
    """Log that a user opened an identified record (patient page, record page): who, when, which patient.

    Only GETs are reads; a POST is a write and has its own trail entries.
    """
    if request.method == "GET":
        record_access(action=AuditEvent.Action.VIEW, instance=instance, user=request.user, extra={"page": page})


def record_search(*, user: Any, term: str) -> AuditEvent:
    """Log a term typed into the patient search (names and MRNs are identifiers: the trail is where they go,
    never the web server's log lines)."""
    return record_event(action=AuditEvent.Action.SEARCH, user=user, extra={"term": term})
