"""Writes of patients and consents. Views, admin and the importer use these."""

import datetime
import hashlib
import re
from typing import Any

from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import translation
from django.utils.translation import gettext as _

from accounts.models import Site
from audit.services import delete_audited, record_updated, row_values, save_audited
from patients.models import CaseLock, Consent, ConsentVersion, FollowUpEndReason, Patient
from patients.rules import check_case
from registry import dates
from registry.dates import today


def next_study_id(site: Site) -> str:
    """The site's next study ID (site code + sequence), never derived from identifiers."""
    numbers = Patient.objects.filter(site=site, study_id__startswith=f"{site.code}-").values_list("study_id", flat=True)
    highest = max(
        (int(m.group(1)) for s in numbers if (m := re.fullmatch(rf"{re.escape(site.code)}-(\d+)", s))), default=0
    )
    return f"{site.code}-{highest + 1:04d}"


def enrol_patient(*, patient: Patient, user: Any) -> Patient:
    """Give a new patient a study ID and save it with its audit entry."""
    with transaction.atomic():
        Site.objects.select_for_update().get(pk=patient.site_id)  # serialise ID allocation per site
        if not patient.study_id:
            patient.study_id = next_study_id(patient.site)
        save_audited(patient, user=user)
        return patient


def update_patient(*, patient: Patient, user: Any, reason: str, expected_version: int | None) -> Patient:
    """Save an edit of the patient's record; refused if it strands another record of the case
    (a visit before a later enrolment date, a completed visit after a death date...)."""
    ensure_not_locked(patient)
    with transaction.atomic():
        save_audited(patient, user=user, reason=reason, expected_version=expected_version)
        check_case(patient, editing=patient)
    return patient


def sha256_of(upload: Any) -> str:
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    return digest.hexdigest()


def record_consent(*, consent: Consent, user: Any, document: UploadedFile | None = None) -> Consent:
    """A new consent record (re-consent to a new version is a new record too).

    The signed PDF's SHA-256 is computed here, from the bytes received.
    """
    if document is not None:
        consent.document = document  # type: ignore[assignment]
        consent.document_sha256 = sha256_of(document)
    with transaction.atomic():
        save_audited(consent, user=user, reason="Consent recorded")
        check_case(consent.patient, editing=consent)
    return consent


def document_matches(consent: Consent) -> bool | None:
    """Re-check the stored PDF against its recorded hash (None when there is no file)."""
    if not consent.document:
        return None
    try:
        with consent.document.open("rb") as fh:
            return sha256_of(fh) == consent.document_sha256
    except FileNotFoundError:
        return False


def withdraw_consent(
    *, consent: Consent, scope: str, reason: str, user: Any, on: datetime.date | None = None
) -> Consent:
    """Record a withdrawal; it takes effect everywhere at once (worklist, entry, analyses, exports)."""
    if scope not in Consent.WithdrawalScope.values:
        raise ValidationError({"withdrawal_scope": _("Choose the scope of the withdrawal.")})
    if not reason.strip():
        raise ValidationError({"withdrawal_reason": _("Give the reason for the withdrawal.")})
    with transaction.atomic():
        current = Consent.objects.select_for_update().get(pk=consent.pk)
        if current.withdrawn_date:
            raise ValidationError(_("This consent is already withdrawn."))
        before = row_values(current)
        current.withdrawn_date = on or today()
        current.withdrawal_scope = scope
        current.withdrawal_reason = reason
        current.version += 1
        current.full_clean()
        current.save()
        check_case(current.patient, editing=current)
        record_updated(
            current,
            before,
            user=user,
            reason=f"Consent withdrawn: {reason}",
            study_id=current.patient.study_id,
            site_code=current.patient.site.code,
        )
        return current


def delete_patient(*, patient: Patient, user: Any, reason: str) -> None:
    """Admins only (the view checks the role); every deleted value stays in the trail."""
    ensure_not_locked(patient)
    delete_audited(patient, user=user, reason=reason)


def current_version() -> ConsentVersion | None:
    """The consent form version in force today (the latest to start, if several)."""
    today = dates.today()
    return (
        ConsentVersion.objects.filter(effective_from__lte=today)
        .exclude(effective_to__lt=today)
        .order_by("-effective_from")
        .first()
    )


def ensure_data_entry_allowed(patient: Patient, record: Any = None) -> None:
    """Clinical data needs a valid consent and an unlocked case (or visit, for `record` a visit);
    raise the reason why not, for the form to show."""
    reason = patient.data_entry_block_reason()
    if reason:
        raise ValidationError(reason)
    ensure_not_locked(patient, getattr(record, "timepoint", "") or "")


def active_lock(patient: Patient, timepoint: str = "") -> CaseLock | None:
    """The signature locking the case, or (for a timepoint) the case or that visit; None when unlocked."""
    if patient.pk is None:
        return None
    locks = CaseLock.objects.active().filter(patient_id=patient.pk).select_related("patient")
    timepoints = ["", timepoint] if timepoint else [""]
    return locks.filter(timepoint__in=timepoints).order_by("timepoint").first()


def lock_message(lock: CaseLock) -> str:
    args = {
        "study_id": lock.patient.study_id,
        "visit": lock.what,
        "name": lock.signed_by_name,
        "at": f"{lock.signed_at:%Y-%m-%d %H:%M}",
        "meaning": lock.meaning,
    }
    if lock.timepoint:
        message = _(
            "%(study_id)s: the %(visit)s visit is locked: signed by %(name)s on %(at)s UTC ('%(meaning)s'). "
            "No change is possible until an administrator unlocks it with a reason."
        )
    else:
        message = _(
            "%(study_id)s: the case is locked: signed by %(name)s on %(at)s UTC ('%(meaning)s'). "
            "No change is possible until an administrator unlocks it with a reason."
        )
    return message % args


def ensure_not_locked(patient: Patient, timepoint: str = "") -> None:
    """Refuse any change of a locked case (or locked visit); every clinical service calls this."""
    lock = active_lock(patient, timepoint)
    if lock is not None:
        raise ValidationError(lock_message(lock))


def end_follow_up(
    *, patient: Patient, on: datetime.date, reason: str, note: str = "", user: Any, expected_version: int
) -> Patient:
    """End the patient's participation: she leaves the worklist and the reminders.

    Survival is unaffected: it is censored at the last contact as for everyone.
    """
    if reason not in FollowUpEndReason.values:
        raise ValidationError({"follow_up_end_reason": _("Choose why follow-up ended.")})
    if reason == FollowUpEndReason.OTHER and not note.strip():
        raise ValidationError({"follow_up_end_note": _("Explain the reason when it is 'Other'.")})
    if on is None or on > today():
        raise ValidationError({"follow_up_ended": _("Give the date follow-up ended (today or earlier).")})
    if on < patient.enrolment_date:
        raise ValidationError({"follow_up_ended": _("Follow-up cannot end before the enrolment date.")})
    ensure_not_locked(patient)
    patient.follow_up_ended = on
    patient.follow_up_end_reason = reason
    patient.follow_up_end_note = note
    with translation.override("en"):  # the trail's reason is stored, in one language whoever reads it later
        label = str(FollowUpEndReason(reason).label)
    with transaction.atomic():
        save_audited(
            patient,
            user=user,
            reason=f"Follow-up ended: {label}" + (f" ({note})" if note else ""),
            expected_version=expected_version,
        )
    return patient
