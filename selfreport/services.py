"""Writes of self-report links and submissions, and the nurse's review that turns one into a visit.

A submission never counts by itself: only `accept_report` creates the
FollowUp, through outcomes.services.record_visit (the one write path), so the
dashboard and exports see a self-report only once a nurse accepted it. Every
step is in the audit trail: the link, the patient's entry ("entered by the
patient via link N"), each correction with its reason, and the review.
"""

import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from audit.models import AuditEvent
from audit.services import change_event, record_change
from outcomes.models import ODI_FIELDS, FollowUp, Medication
from outcomes.services import record_visit
from patients.models import Consent, Patient
from registry import dates, scoring
from selfreport.models import LinkToken, SelfReport, SelfReportLink, SelfReportMedication, TokenFailure, hash_token

# Visits a patient answers at home (baseline and the post-procedure days are taken by staff).
SELF_REPORT_TIMEPOINTS = ("w1", "m1", "m3", "m6", "m12")
NEUTRAL = gettext_noop(
    "This link cannot be used. It may have expired or been replaced. Please contact your research nurse."
)


def contact_block_reason(patient: Patient) -> str:
    """Why this patient may not be sent a link, or "" when she may."""
    if patient.is_deceased:
        return _("The patient has died.")
    consents = sorted(patient.consents.all(), key=lambda c: (c.signed_date, c.pk))
    if not consents:
        return _("No consent is recorded for this patient.")
    if any(c.withdrawal_scope == Consent.WithdrawalScope.NO_CONTACT for c in consents):
        return _("The patient asked for no further contact.")
    latest = consents[-1]
    if latest.withdrawn_date:
        return _("The patient withdrew consent.")
    if not latest.scope_future_contact:
        return _("The patient did not consent to future contact.")
    if patient.followups.filter(status__in=[FollowUp.Status.DECEASED, FollowUp.Status.WITHDRAWN]).exists():
        return _("The patient's follow-up has ended.")
    return patient.data_entry_block_reason()


def window_of(patient: Patient, timepoint: str) -> tuple[datetime.date, datetime.date] | None:
    index = patient.procedures.filter(procedure_number=1).values_list("procedure_date", flat=True).first()
    return scoring.visit_window(timepoint, index) if index else None


def _end_of_day(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(
        day + datetime.timedelta(days=1), datetime.time.min, timezone.get_current_timezone()
    )


def language_for(patient: Patient) -> str:
    return settings.SELFREPORT_SITE_LANGUAGES.get(patient.site.code, settings.SELFREPORT_LANGUAGE)


def create_link(*, patient: Patient, timepoint: str, user: Any, today: datetime.date | None = None) -> SelfReportLink:
    """A link for one due visit; ValidationError (naming why) if the patient may not be sent one."""
    today = today or dates.today()
    if timepoint not in SELF_REPORT_TIMEPOINTS:
        raise ValidationError({"timepoint": _("Self-report is offered for the 1-week to 12-month visits.")})
    reason = contact_block_reason(patient)
    if reason:
        raise ValidationError({"patient": _("%(reason)s No link can be sent.") % {"reason": reason}})
    window = window_of(patient, timepoint)
    if window is None:
        raise ValidationError({"patient": _("No index procedure is recorded: the visit has no window yet.")})
    opens, closes = window
    if today < opens or today > closes:
        raise ValidationError(
            {
                "timepoint": _("The visit window is %(opens)s to %(closes)s; a link is sent within it.")
                % {"opens": opens.isoformat(), "closes": closes.isoformat()}
            }
        )
    if patient.followups.filter(timepoint=timepoint).exists():
        raise ValidationError({"timepoint": _("This visit is already recorded.")})
    with transaction.atomic():
        if SelfReportLink.objects.filter(patient=patient, timepoint=timepoint, revoked_at__isnull=True).exists():
            raise ValidationError({"timepoint": _("This visit already has a link; revoke it first to send a new one.")})
        link = SelfReportLink(patient=patient, timepoint=timepoint, created_by=user, expires_at=_end_of_day(closes))
        link.full_clean()
        link.save()
        record_change(
            action=AuditEvent.Action.CREATE,
            instance=link,
            user=user,
            changes={"timepoint": [None, timepoint], "expires_at": [None, link.expires_at.isoformat()]},
            reason=f"Self-report link {link.pk} created",
            study_id=patient.study_id,
            site_code=patient.site.code,
        )
    return link


def revoke_link(*, link: SelfReportLink, user: Any, reason: str) -> SelfReportLink:
    if not reason.strip():
        raise ValidationError({"reason": _("Give the reason for revoking the link.")})
    with transaction.atomic():
        link = SelfReportLink.objects.select_for_update().get(pk=link.pk)
        if link.revoked_at:
            raise ValidationError(_("This link is already revoked."))
        link.revoked_at, link.revoked_by, link.revoke_reason = timezone.now(), user, reason
        link.save()
        record_change(
            action=AuditEvent.Action.UPDATE,
            instance=link,
            user=user,
            changes={"revoked_at": [None, link.revoked_at.isoformat()]},
            reason=reason,
            study_id=link.patient.study_id,
            site_code=link.patient.site.code,
        )
    return link


def too_many_failures(address: str) -> bool:
    since = timezone.now() - datetime.timedelta(hours=1)
    return TokenFailure.objects.filter(address=address, at__gte=since).count() >= settings.SELFREPORT_MAX_TOKEN_FAILURES


def link_for_token(raw: str, address: str) -> SelfReportLink | None:
    """The usable link this token opens, or None (counted against the address) for any other token."""
    link = None
    if 20 <= len(raw) <= 100:
        found = LinkToken.objects.select_related("link__patient__site").filter(token_hash=hash_token(raw)).first()
        link = found.link if found else None
    if link is None or not link.is_usable() or contact_block_reason(link.patient):
        TokenFailure.objects.create(address=address)
        return None
    return link


def mark_opened(link: SelfReportLink) -> None:
    if link.opened_at is None:
        SelfReportLink.objects.filter(pk=link.pk, opened_at__isnull=True).update(opened_at=timezone.now())


def submit_report(
    *, link: SelfReportLink, vas: Decimal, odi: list[int | None], medications: list[tuple[str, Decimal]]
) -> SelfReport:
    """Store the patient's answers as a pending self-report; a second submission is refused."""
    with transaction.atomic():
        link = SelfReportLink.objects.select_for_update().select_related("patient__site").get(pk=link.pk)
        if not link.is_usable() or SelfReport.objects.filter(link=link).exists():
            raise ValidationError(NEUTRAL)
        report = SelfReport(link=link, vas=vas, **{f"odi_q{i}": a for i, a in enumerate(odi, 1)})
        report.full_clean()
        try:
            with transaction.atomic():
                report.save()
        except IntegrityError:
            raise ValidationError(NEUTRAL) from None
        for drug, dose in medications:
            row = SelfReportMedication(report=report, drug=drug, daily_dose=dose)
            row.full_clean()
            row.save()
        link.submitted_at = report.submitted_at
        link.save(update_fields=["submitted_at"])
        changes = {"vas": [None, str(report.vas)]}
        changes.update({f"odi_q{i}": [None, a] for i, a in enumerate(odi, 1)})
        changes["medications"] = [None, [f"{d} {dose}" for d, dose in medications]]
        event = change_event(
            action=AuditEvent.Action.CREATE,
            instance=report,
            user=None,
            changes=changes,
            reason=f"Entered by the patient via link {link.pk}",
            study_id=link.patient.study_id,
            site_code=link.patient.site.code,
            extra={"entered_by": "patient", "link": link.pk, "timepoint": link.timepoint},
        )
        event.username = f"patient via link {link.pk}"
        event.save()
    return report


def _meds_text(meds: list[tuple[str, Decimal]]) -> list[str]:
    return [f"{d} {Decimal(dose).normalize():f}" for d, dose in meds]


def accept_report(
    *,
    report: SelfReport,
    user: Any,
    vas: Decimal,
    odi: list[int | None],
    medications: list[tuple[str, Decimal]],
    reason: str = "",
) -> FollowUp:
    """The nurse's review: her values (corrected where needed, with a reason) become the visit.

    The visit is created through outcomes.services.record_visit; each value she
    changed from the patient's answer is one trail entry with her reason.
    """
    with transaction.atomic():
        report = SelfReport.objects.select_for_update().select_related("link__patient__site").get(pk=report.pk)
        if report.status != SelfReport.Status.PENDING:
            raise ValidationError(_("This self-report was already reviewed."))
        link, patient = report.link, report.link.patient
        patient_meds = [(m.drug, m.daily_dose) for m in report.medications.all()]
        corrections: dict[str, list[Any]] = {}
        if Decimal(vas) != report.vas:
            corrections["vas"] = [str(report.vas), str(Decimal(vas).quantize(Decimal("0.1")))]
        for i, answer in enumerate(odi, 1):
            if answer != getattr(report, f"odi_q{i}"):
                corrections[f"odi_q{i}"] = [getattr(report, f"odi_q{i}"), answer]
        if sorted(_meds_text(medications)) != sorted(_meds_text(patient_meds)):
            corrections["medications"] = [_meds_text(patient_meds), _meds_text(medications)]
        if corrections and not reason.strip():
            raise ValidationError({"reason": _("You changed the patient's answers: give the reason for the change.")})
        visit = FollowUp(
            patient=patient,
            timepoint=link.timepoint,
            visit_date=timezone.localdate(report.submitted_at),
            status=FollowUp.Status.COMPLETED,
            vas=vas,
            **dict(zip(ODI_FIELDS, odi, strict=True)),
        )
        meds = [Medication(drug=d, daily_dose=dose) for d, dose in medications]
        record_visit(
            visit=visit, medications=meds, user=user, reason=f"Self-report via link {link.pk}, accepted on review"
        )
        keys = {"study_id": patient.study_id, "site_code": patient.site.code}
        for field, change in corrections.items():
            record_change(
                action=AuditEvent.Action.UPDATE,
                instance=report,
                user=user,
                changes={field: change},
                reason=reason,
                extra={"link": link.pk, "correction": field},
                **keys,
            )
        report.status, report.reviewed_by, report.reviewed_at = SelfReport.Status.ACCEPTED, user, timezone.now()
        report.review_reason, report.followup = reason, visit
        report.save()
        record_change(
            action=AuditEvent.Action.UPDATE,
            instance=report,
            user=user,
            changes={"status": ["pending", "accepted"], "followup": [None, str(visit.pk)]},
            reason=f"Reviewed and accepted ({len(corrections)} correction(s))",
            extra={"link": link.pk, "review": "accepted", "corrections": sorted(corrections)},
            **keys,
        )
    return visit


def reject_report(*, report: SelfReport, user: Any, reason: str) -> SelfReport:
    if not reason.strip():
        raise ValidationError({"reason": _("Give the reason for rejecting the self-report.")})
    with transaction.atomic():
        report = SelfReport.objects.select_for_update().select_related("link__patient__site").get(pk=report.pk)
        if report.status != SelfReport.Status.PENDING:
            raise ValidationError(_("This self-report was already reviewed."))
        report.status, report.reviewed_by, report.reviewed_at = SelfReport.Status.REJECTED, user, timezone.now()
        report.review_reason = reason
        report.save()
        record_change(
            action=AuditEvent.Action.UPDATE,
            instance=report,
            user=user,
            changes={"status": ["pending", "rejected"]},
            reason=reason,
            extra={"link": report.link_id, "review": "rejected"},
            study_id=report.link.patient.study_id,
            site_code=report.link.patient.site.code,
        )
    return report
