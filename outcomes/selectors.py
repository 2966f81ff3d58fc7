"""Reads behind the nurse's pages that combine a patient's whole case: the
follow-up worklist and the patient page.

Each runs a fixed number of queries whatever the number of patients (tests pin it).
"""

import datetime
from dataclasses import dataclass

from django.db.models import Exists, OuterRef, Prefetch, QuerySet, Subquery
from django.shortcuts import get_object_or_404

from accounts.models import User
from audit.models import AuditEvent
from outcomes.models import FollowUp, Timepoint
from patients.models import Consent, Patient
from patients.selectors import patients_for, with_index_date
from procedures.models import Procedure
from registry import dates
from registry.scoring import visit_window

DUE_HORIZON_DAYS = 14  # "visits due in the coming days": a fortnight lets a nurse book them
NO_MORE_DATA = [Consent.WithdrawalScope.NO_NEW_DATA, Consent.WithdrawalScope.REMOVE_DATA]
FOLLOW_UP_ENDED = [FollowUp.Status.DECEASED, FollowUp.Status.WITHDRAWN]


@dataclass(frozen=True)
class DueVisit:
    patient: Patient
    timepoint: str
    label: str
    opens: datetime.date
    closes: datetime.date
    overdue: bool


@dataclass
class Worklist:
    visits: list[DueVisit]
    awaiting_procedure: list[Patient]


def due_timepoints(
    index_date: datetime.date, recorded: set[str], today: datetime.date, horizon: int = DUE_HORIZON_DAYS
) -> list[tuple[str, datetime.date, datetime.date, bool]]:
    """(timepoint, window opens, window closes, overdue) of the visits not yet recorded whose window
    has opened or opens within `horizon` days."""
    out = []
    for timepoint in Timepoint.values:
        if timepoint in recorded:
            continue
        opens, closes = visit_window(timepoint, index_date)
        if opens <= today + datetime.timedelta(days=horizon):
            out.append((timepoint, opens, closes, closes < today))
    return out


def worklist(user: User, today: datetime.date | None = None) -> Worklist:
    """Visits due soon or overdue at the user's sites.

    Patients who died, whose follow-up ended (deceased/withdrawn visit) or who
    withdrew from new data collection are never listed: nobody should call them.
    """
    today = today or dates.today()
    # The latest consent decides (a re-consent after a "no new data" withdrawal reopens follow-up);
    # a "remove data" withdrawal, on any consent, ends it for good.
    latest = Consent.objects.filter(patient=OuterRef("pk")).order_by("-signed_date", "-id")
    removed = Consent.objects.filter(patient=OuterRef("pk"), withdrawal_scope=Consent.WithdrawalScope.REMOVE_DATA)
    ended = FollowUp.objects.filter(patient=OuterRef("pk"), status__in=FOLLOW_UP_ENDED)
    patients = (
        with_index_date(patients_for(user))
        .filter(death_date__isnull=True)
        .annotate(
            latest_scope=Subquery(latest.values("withdrawal_scope")[:1]),
            consented=Subquery(latest.values("scope_registry")[:1]),
        )
        .exclude(Exists(removed))
        .exclude(Exists(ended))
        .exclude(latest_scope__in=NO_MORE_DATA)
        .prefetch_related(Prefetch("followups", queryset=FollowUp.objects.only("patient_id", "timepoint")))
        .order_by("study_id")
    )
    visits, awaiting = [], []
    for patient in patients:
        if patient.index_date is None:
            awaiting.append(patient)
            continue
        recorded = {f.timepoint for f in patient.followups.all()}
        for timepoint, opens, closes, overdue in due_timepoints(patient.index_date, recorded, today):
            label = Timepoint(timepoint).label.split(" (")[0]
            visits.append(DueVisit(patient, timepoint, label, opens, closes, overdue))
    visits.sort(key=lambda v: (not v.overdue, v.closes if v.overdue else v.opens, v.patient.study_id))
    return Worklist(visits, awaiting)


def case_for(user: User, study_id: str) -> Patient:
    """One patient with everything the patient page shows, prefetched."""
    queryset = (
        patients_for(user)
        .select_related("site")
        .prefetch_related(
            Prefetch("consents", queryset=Consent.objects.select_related("consent_version")),
            Prefetch("procedures", queryset=Procedure.objects.prefetch_related("leakages", "complications")),
            Prefetch("followups", queryset=FollowUp.objects.prefetch_related("medications")),
        )
    )
    return get_object_or_404(queryset, study_id=study_id)


def history_of(patient: Patient, limit: int = 200) -> QuerySet[AuditEvent]:
    """The patient's audit trail, newest first."""
    return AuditEvent.objects.filter(study_id=patient.study_id).order_by("-at", "-id")[:limit]


@dataclass(frozen=True)
class VisitRow:
    timepoint: str
    label: str
    visit: FollowUp | None
    opens: datetime.date | None
    closes: datetime.date | None
    state: str  # recorded, overdue, due, upcoming, not due, no procedure


def visit_rows(patient: Patient, today: datetime.date | None = None) -> list[VisitRow]:
    """One row per timepoint: the recorded visit, or whether it is due (uses the prefetched rows)."""
    today = today or dates.today()
    index = next((p.procedure_date for p in patient.procedures.all() if p.procedure_number == 1), None)
    visits = {f.timepoint: f for f in patient.followups.all()}
    latest = patient.current_consent()
    stopped = patient.is_deceased or patient.data_removed or bool(latest and latest.withdrawal_scope in NO_MORE_DATA)
    stopped = stopped or any(f.status in FOLLOW_UP_ENDED for f in visits.values())
    rows = []
    for timepoint, full_label in Timepoint.choices:
        opens, closes = visit_window(timepoint, index) if index else (None, None)
        visit = visits.get(timepoint)
        if visit:
            state = "recorded"
        elif opens is None or closes is None:
            state = "no procedure"
        elif stopped:
            state = "not due"
        elif closes < today:
            state = "overdue"
        elif opens <= today:
            state = "due"
        else:
            state = "upcoming"
        rows.append(VisitRow(timepoint, full_label.split(" (")[0], visit, opens, closes, state))
    return rows
