"""Reads behind the audit pages: the trail search, a patient's history, the consent register."""

import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import Prefetch, Q, QuerySet, TextChoices
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from accounts.permissions import scope_to_sites
from audit.display import field_filter
from audit.models import AuditEvent
from patients.models import Consent, ConsentVersion, Patient
from patients.services import current_version


def _utc_midnight(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time.min, tzinfo=datetime.UTC)


def visible_events(user: User) -> QuerySet[AuditEvent]:
    """Events of the user's sites, plus those that belong to no site (log-ins, imports, versions)."""
    events = AuditEvent.objects.all()
    if user.sees_all_sites:
        return events
    return events.filter(Q(site_code="") | Q(site_code__in=user.sites.values("code")))


def search_trail(user: User, filters: dict[str, Any]) -> QuerySet[AuditEvent]:
    """Events matching TrailFilterForm's cleaned data; dates are whole UTC days."""
    events = visible_events(user)
    if filters.get("username"):
        events = events.filter(username__iexact=filters["username"].strip())
    if filters.get("model"):
        events = events.filter(model=filters["model"])
    if filters.get("field") and (changed := field_filter(filters["field"])) is not None:
        events = events.filter(changed)
    if filters.get("action"):
        events = events.filter(action=filters["action"])
    if filters.get("study_id"):
        events = events.filter(study_id__iexact=filters["study_id"].strip())
    if filters.get("date_from"):
        events = events.filter(at__gte=_utc_midnight(filters["date_from"]))
    if filters.get("date_to"):
        events = events.filter(at__lt=_utc_midnight(filters["date_to"] + datetime.timedelta(days=1)))
    return events


def patient_history(user: User, study_id: str) -> QuerySet[AuditEvent]:
    """Every event of one patient, oldest first; events keep the study ID after a deletion."""
    return visible_events(user).filter(study_id=study_id).order_by("at", "id")


class ConsentState(TextChoices):
    VALID = "valid", _("Valid")
    MISSING = "missing", _("No consent recorded")
    REFUSED = "refused", _("Registry use refused")
    WITHDRAWN = "withdrawn", _("Withdrawn")


@dataclass(frozen=True)
class RegisterRow:
    patient: Patient
    consent: Consent | None
    state: ConsentState
    needs_reconsent: bool
    lacks_valid_consent: bool  # data entry is refused (the same rule the data-entry pages apply)


def _register_row(patient: Patient, current: ConsentVersion | None) -> RegisterRow:
    consent = patient.current_consent()
    if consent is None:
        state = ConsentState.MISSING
    elif consent.withdrawn_date:
        state = ConsentState.WITHDRAWN
    elif not consent.scope_registry:
        state = ConsentState.REFUSED
    else:
        state = ConsentState.VALID
    needs_reconsent = bool(
        state == ConsentState.VALID and consent and current and consent.consent_version_id != current.pk
    )
    return RegisterRow(patient, consent, state, needs_reconsent, bool(patient.data_entry_block_reason()))


def consent_register(
    user: User, *, site: Any = None, version: ConsentVersion | None = None, state: str = ""
) -> tuple[ConsentVersion | None, Iterator[RegisterRow]]:
    """The version in force today and every visible patient's current consent state.

    Three queries whatever the number of patients (current version, patients with
    their site, consents with their version); rows stream in chunks for the CSV.
    Version and state describe the *current* consent, so they filter in Python.
    """
    current = current_version()
    patients = scope_to_sites(Patient.objects.select_related("site"), user).prefetch_related(
        Prefetch("consents", queryset=Consent.objects.select_related("consent_version"))
    )
    if site:
        patients = patients.filter(site=site)

    def rows() -> Iterator[RegisterRow]:
        for patient in patients.iterator(chunk_size=500):
            row = _register_row(patient, current)
            if version and (row.consent is None or row.consent.consent_version_id != version.pk):
                continue
            if state == "reconsent" and not row.needs_reconsent:
                continue
            if state and state != "reconsent" and row.state != state:
                continue
            yield row

    return current, rows()
