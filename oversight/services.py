"""Writes of study monitoring: queries and their thread, source data verification, and the
electronic signatures that lock a case (patients.CaseLock). Every state change is in the trail."""

import re
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from accounts import second_factor
from accounts.models import User
from audit.models import AuditEvent
from audit.services import record_change, record_created, row_values
from outcomes.models import FollowUp
from oversight.models import DataQuery, QueryMessage, Verification
from patients.models import CaseLock, Consent, Patient
from procedures.models import Procedure

# The records a query may point at, and how each names itself on the page.
QUERYABLE: dict[str, type[models.Model]] = {
    "patients.Patient": Patient,
    "patients.Consent": Consent,
    "procedures.Procedure": Procedure,
    "outcomes.FollowUp": FollowUp,
}
IDENTIFYING = {"full_name", "mrn", "email", "date_of_birth"}
RAISERS = (User.Role.MONITOR, User.Role.INVESTIGATOR, User.Role.ADMIN)
ANSWERERS = (User.Role.NURSE, User.Role.ADMIN)


def _keys(patient: Patient) -> dict[str, str]:
    return {"study_id": patient.study_id, "site_code": patient.site.code}


def _may(user: Any, roles: tuple[str, ...], patient: Patient) -> bool:
    if not user.is_authenticated:
        return False
    if not (user.is_superuser or user.role in roles):
        return False
    return user.sees_all_sites or user.sites.filter(pk=patient.site_id).exists()


def record_label(record: models.Model) -> str:
    """How a query or verification names its record, kept in English (a stored value); `shown_label` translates."""
    if isinstance(record, FollowUp):
        with translation.override("en"):
            return f"{record.get_timepoint_display().split(' (')[0]} visit"
    if isinstance(record, Procedure):
        return f"Procedure {record.procedure_number}"
    if isinstance(record, Consent):
        return f"Consent of {record.signed_date:%Y-%m-%d}"
    return "Patient"


def _english(text: Any) -> str:
    """A lazy label in English: the trail's reasons are stored text, the same whoever writes them."""
    with translation.override("en"):
        return str(text)


def _english_timepoints() -> dict[str, str]:
    with translation.override("en"):
        return {str(label).split(" (")[0]: code for code, label in FollowUp._meta.get_field("timepoint").choices}


def shown_label(stored: str) -> str:
    """A stored record label (record_label's English) in the reader's language; an unknown text as it is."""
    if stored == "Patient":
        return _("Patient")
    if stored == "Whole case":
        return _("Whole case")
    if m := re.fullmatch(r"Procedure (\d+)", stored):
        return _("Procedure %(n)s") % {"n": m[1]}
    if m := re.fullmatch(r"Consent of (\d{4}-\d\d-\d\d)", stored):
        return _("Consent of %(date)s") % {"date": m[1]}
    if (m := re.fullmatch(r"(.+) visit", stored)) and m[1] in (codes := _english_timepoints()):
        label = dict(FollowUp._meta.get_field("timepoint").choices)[codes[m[1]]]
        return _("%(timepoint)s visit") % {"timepoint": re.split(r"\s*[(（]", str(label), maxsplit=1)[0]}
    return stored


def queryable_fields(record: models.Model, user: Any = None) -> list[tuple[str, str]]:
    """(name, label) of the values a query may be raised on (identifiers only for those who see them)."""
    out = []
    for f in record._meta.concrete_fields:
        if f.name in ("id", "version") or f.is_relation:
            continue
        if f.name in IDENTIFYING and user is not None and not user.can_see_identifiers:
            continue
        out.append((f.name, str(f.verbose_name)))
    return out


def patient_of(record: models.Model) -> Patient:
    return record if isinstance(record, Patient) else record.patient  # type: ignore[attr-defined]


def load_record(model_label: str, pk: int) -> models.Model:
    if model_label not in QUERYABLE:
        raise ValidationError({"record": _("Queries cannot be raised on '%(model)s'.") % {"model": model_label}})
    model = QUERYABLE[model_label]
    record = model._default_manager.filter(pk=pk).first()
    if record is None:
        raise ValidationError({"record": _("That record no longer exists.")})
    return record


def _value(record: models.Model, field: str) -> str:
    value = getattr(record, field)
    return "" if value is None else str(value)[:200]


def raise_query(*, record: models.Model, field: str, question: str, user: Any, rule_code: str = "") -> DataQuery:
    """Open a query on one value. Monitors, investigators and admins of the case's site (rules: user None)."""
    patient = patient_of(record)
    if user is not None and not _may(user, RAISERS, patient):
        raise PermissionDenied
    with translation.override("en"):  # field_label is stored: English, shown translated (DataQuery.field_label_shown)
        names = dict(queryable_fields(record))
    if field not in names:
        raise ValidationError({"field": _("'%(field)s' is not a value of this record.") % {"field": field}})
    if not question.strip():
        raise ValidationError({"question": _("Write the question for the site.")})
    with transaction.atomic():
        query = DataQuery(
            patient=patient,
            record_model=record._meta.label,
            record_pk=record.pk,
            record_label=record_label(record),
            field=field,
            field_label=names[field],
            value_when_raised=_value(record, field),
            question=question.strip(),
            raised_by=user if user is not None and user.is_authenticated else None,
            rule_code=rule_code,
        )
        query.full_clean()
        query.save()
        QueryMessage.objects.create(
            query=query, kind=QueryMessage.Kind.QUESTION, text=query.question, author=query.raised_by
        )
        record_created(query, user=user, reason=f"Query raised: {query.question}", **_keys(patient))
    return query


def _transition(
    query: DataQuery, *, user: Any, kind: str, text: str, new_state: str, allowed_from: tuple[str, ...], refusal: str
) -> DataQuery:
    if not text.strip():
        raise ValidationError({"text": _("Write the message: it goes into the query's thread and the audit trail.")})
    with transaction.atomic():
        current = DataQuery.objects.select_for_update().select_related("patient__site").get(pk=query.pk)
        old = current.state
        if old not in allowed_from:
            raise ValidationError(refusal)
        current.state = new_state
        current.save()
        QueryMessage.objects.create(query=current, kind=kind, text=text.strip(), author=user)
        record_change(
            action=AuditEvent.Action.UPDATE,
            instance=current,
            user=user,
            changes={"state": [old, new_state]} if old != new_state else {},
            reason=f"Query {_english(QueryMessage.Kind(kind).label).lower()}: {text.strip()}",
            extra={"query_message": kind},
            **_keys(current.patient),
        )
    return current


OPEN, ANSWERED, CLOSED = DataQuery.State.OPEN, DataQuery.State.ANSWERED, DataQuery.State.CLOSED


def answer_query(*, query: DataQuery, user: Any, text: str) -> DataQuery:
    """The site's nurse (or an admin) answers; the query waits for the monitor."""
    if not _may(user, ANSWERERS, query.patient):
        raise PermissionDenied
    refusal = _("This query is closed; ask the monitor to re-open it.")
    return _transition(
        query,
        user=user,
        kind=QueryMessage.Kind.ANSWER,
        text=text,
        new_state=ANSWERED,
        allowed_from=(OPEN, ANSWERED),
        refusal=refusal,
    )


def close_query(*, query: DataQuery, user: Any, text: str) -> DataQuery:
    if not _may(user, RAISERS, query.patient):
        raise PermissionDenied
    return _transition(
        query,
        user=user,
        kind=QueryMessage.Kind.CLOSE,
        text=text,
        new_state=CLOSED,
        allowed_from=(OPEN, ANSWERED),
        refusal=_("This query is already closed."),
    )


def reopen_query(*, query: DataQuery, user: Any, text: str) -> DataQuery:
    if not _may(user, RAISERS, query.patient):
        raise PermissionDenied
    return _transition(
        query,
        user=user,
        kind=QueryMessage.Kind.REOPEN,
        text=text,
        new_state=OPEN,
        allowed_from=(ANSWERED, CLOSED),
        refusal=_("This query is already open."),
    )


# --- source data verification ------------------------------------------------


def mark_verified(*, patient: Patient, scope: str, user: Any, record_pk: int | None = None) -> Verification:
    """A monitor (or admin) marks the whole case, a procedure or a visit verified against source."""
    if not _may(user, (User.Role.MONITOR, User.Role.ADMIN), patient):
        raise PermissionDenied
    if scope == Verification.Scope.CASE:
        label = "Whole case"
        record_pk = None
    elif scope == Verification.Scope.PROCEDURE:
        proc = Procedure.objects.filter(patient=patient, pk=record_pk).first()
        if proc is None:
            raise ValidationError(_("No such procedure in this case."))
        label = record_label(proc)
    elif scope == Verification.Scope.VISIT:
        visit = FollowUp.objects.filter(patient=patient, pk=record_pk).first()
        if visit is None:
            raise ValidationError(_("No such visit in this case."))
        label = record_label(visit)
    else:
        raise ValidationError(_("Choose what was verified."))
    with transaction.atomic():
        v = Verification.objects.create(
            patient=patient, scope=scope, record_pk=record_pk, record_label=label, verified_by=user
        )
        record_created(v, user=user, reason=f"Source data verified: {label}", **_keys(patient))
    return v


# --- electronic signatures (21 CFR Part 11 §11.50, §11.200) --------------------


def check_signature(user: Any, password: str, code: str = "") -> bool:
    """Both components of the signature: the password again and, if she has one, her second factor."""
    if not password or not user.check_password(password):
        raise ValidationError({"password": _("The password is not correct: the signature was not applied.")})
    if second_factor.has_second_factor(user):
        if second_factor.verify(user, code) is None:
            raise ValidationError({"code": _("The authenticator code is not correct: the signature was not applied.")})
        return True
    return False


def sign_lock(
    *, patient: Patient, user: Any, password: str, meaning: str, code: str = "", timepoint: str = ""
) -> CaseLock:
    """An investigator of the site locks the case (or one visit) with her electronic signature."""
    if not _may(user, (User.Role.INVESTIGATOR,), patient):
        raise PermissionDenied
    if meaning.strip() != CaseLock.MEANING:
        raise ValidationError({"meaning": _("Confirm the statement: '%(meaning)s'") % {"meaning": CaseLock.MEANING}})
    if timepoint and not FollowUp.objects.filter(patient=patient, timepoint=timepoint).exists():
        raise ValidationError({"timepoint": _("Only a recorded visit can be locked.")})
    with_factor = check_signature(user, password, code)
    with transaction.atomic():
        if CaseLock.objects.active().filter(patient=patient, timepoint=timepoint).exists():
            raise ValidationError(_("This is already locked."))
        lock = CaseLock(
            patient=patient,
            timepoint=timepoint,
            signed_by=user,
            signed_by_name=user.get_full_name() or user.get_username(),
            signed_at=timezone.now(),
            meaning=CaseLock.MEANING,
            second_factor=with_factor,
        )
        lock.full_clean()
        lock.save()
        record_created(lock, user=user, reason=f"Electronic signature: {CaseLock.MEANING}", **_keys(patient))
    return lock


def unlock(*, lock: CaseLock, user: Any, reason: str) -> CaseLock:
    if not _may(user, (User.Role.ADMIN,), lock.patient):
        raise PermissionDenied
    if not reason.strip():
        raise ValidationError({"reason": _("Give the reason for unlocking; it goes into the audit trail.")})
    with transaction.atomic():
        current = CaseLock.objects.select_for_update().select_related("patient__site").get(pk=lock.pk)
        if current.unlocked_at:
            raise ValidationError(_("This lock was already lifted."))
        before = row_values(current)
        current.unlocked_at = timezone.now()
        current.unlocked_by = user
        current.unlock_reason = reason.strip()
        current.save()
        after = row_values(current)
        record_change(
            action=AuditEvent.Action.UPDATE,
            instance=current,
            user=user,
            changes={k: [before.get(k), v] for k, v in after.items() if before.get(k) != v},
            reason=f"Unlocked: {reason.strip()}",
            **_keys(current.patient),
        )
    return current


def open_query_counts(patients: Any) -> dict[int, int]:
    """Open (not closed) queries per patient id."""
    rows = (
        DataQuery.objects.filter(patient__in=patients)
        .exclude(state=DataQuery.State.CLOSED)
        .values("patient_id")
        .annotate(n=models.Count("id"))
    )
    return {r["patient_id"]: r["n"] for r in rows}
