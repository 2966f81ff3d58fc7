"""Reads behind the nurse's pages that combine a patient's whole case: the
follow-up worklist and the patient page.

Each runs a fixed number of queries whatever the number of patients (tests pin it).
"""

import datetime
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Prefetch, QuerySet
from django.shortcuts import get_object_or_404

from accounts.models import User
from audit.models import AuditEvent
from outcomes.models import FollowUp, Timepoint
from outcomes.odi import BAND_LABELS
from patients.models import Consent, Patient
from patients.selectors import patients_for
from procedures.models import Procedure
from registry import dates
from registry.scoring import VISIT_WINDOWS, odi_band, visit_window

DUE_HORIZON_DAYS = 14  # "visits due in the coming days": a fortnight lets a nurse book them
WEEK_DAYS = 7  # "due this week": the window opens within the next 7 days
PAGE_SIZE = 50
AWAITING_CAP = 50
NO_MORE_DATA = [Consent.WithdrawalScope.NO_NEW_DATA, Consent.WithdrawalScope.REMOVE_DATA]
FOLLOW_UP_ENDED = [FollowUp.Status.DECEASED, FollowUp.Status.WITHDRAWN]

# The worklist's groups, in the order the page shows them.
OVERDUE, DUE_TODAY, THIS_WEEK, LATER = "overdue", "today", "week", "later"
GROUPS = (OVERDUE, DUE_TODAY, THIS_WEEK, LATER)


def visit_label(timepoint: str) -> str:
    return str(Timepoint(timepoint).label).split(" (")[0]


@dataclass(frozen=True)
class DueVisit:
    study_id: str
    full_name: str
    site_code: str
    timepoint: str
    label: str
    opens: datetime.date
    closes: datetime.date
    group: str  # one of GROUPS

    @property
    def overdue(self) -> bool:
        return self.group == OVERDUE


@dataclass(frozen=True)
class AwaitingPatient:
    study_id: str
    full_name: str
    site_code: str
    enrolment_date: datetime.date
    consented: bool  # the latest consent allows registry use (False: none yet, or it refuses)


@dataclass
class Worklist:
    counts: dict[str, int]  # visits per group, with the site and timepoint filters (not the group one)
    visits: "DueVisitRows"  # the filtered visits, sliced by the paginator
    awaiting_procedure: list[AwaitingPatient]  # at most AWAITING_CAP, oldest enrolment first
    awaiting_total: int

    @property
    def total(self) -> int:
        return sum(self.counts.values())


# The worklist's SQL reads outcomes.DueWindow: one row per visit not recorded yet of a patient in
# follow-up (alive; no "remove data" withdrawal on any consent; no visit recorded as deceased or
# withdrawn; the latest consent, by signed date then id, allows registry use and is not withdrawn
# from new data: a re-consent after a "no new data" withdrawal reopens follow-up), with its window
# (index date + registry.scoring.VISIT_WINDOWS). Triggers keep those rows current in the statement
# that changes a patient (outcomes migration 0005), so the counts are index ranges and a page is
# one sort of the due rows, instead of reading every patient's consents and visits.
_COUNTS = """
    SELECT NULL, NULL, NULL, NULL, NULL::date, NULL::date, NULL::int,
           count(*) FILTER (WHERE d.closes < %(today)s::date),
           count(*) FILTER (WHERE d.closes >= %(today)s::date AND d.opens <= %(today)s::date),
           count(*) FILTER (WHERE d.opens > %(today)s::date AND d.opens <= %(week)s::date),
           count(*) FILTER (WHERE d.opens > %(week)s::date)
    FROM outcomes_duewindow d WHERE d.opens <= %(horizon)s::date {scope}
"""
# The page: each group's rows in the order of an index (overdue: closes descending; due now:
# closes; this week and later: opens), each cut at offset + limit, then merged and cut; the patients'
# names only for the rows shown. A deep page reads more index entries, never the whole list twice.
_BRANCHES = (
    "d.closes < %(today)s::date ORDER BY d.closes DESC, d.study_id, d.rank",
    "d.closes >= %(today)s::date AND d.opens <= %(today)s::date ORDER BY d.closes, d.study_id, d.rank",
    "d.opens > %(today)s::date AND d.opens <= %(week)s::date ORDER BY d.opens, d.study_id, d.rank",
    "d.opens > %(week)s::date AND d.opens <= %(horizon)s::date ORDER BY d.opens, d.study_id, d.rank",
)
_BRANCH = "(SELECT d.*, {grp} AS grp FROM outcomes_duewindow d WHERE {where_scope} LIMIT %(limit)s + %(offset)s)"
_PAGE = """
    SELECT p.study_id, p.full_name, s.code, d.timepoint, d.opens, d.closes, d.grp
    FROM (
        SELECT * FROM ({branches}) u
        ORDER BY grp, CASE grp WHEN 0 THEN %(today)s::date - closes WHEN 1 THEN closes - %(today)s::date
                               ELSE opens - %(today)s::date END, study_id, rank
        LIMIT %(limit)s OFFSET %(offset)s
    ) d
    JOIN patients_patient p ON p.id = d.patient_id
    JOIN accounts_site s ON s.id = d.site_id
    ORDER BY d.grp, CASE d.grp WHEN 0 THEN %(today)s::date - d.closes WHEN 1 THEN d.closes - %(today)s::date
                               ELSE d.opens - %(today)s::date END, d.study_id, d.rank
"""


def _page_sql(scope: str, group: str | None) -> str:
    branches = []
    for grp, branch in enumerate(_BRANCHES):
        if group is None or GROUPS[grp] == group:
            where, order = branch.split(" ORDER BY ")
            branches.append(_BRANCH.format(grp=grp, where_scope=f"{where} {scope} ORDER BY {order}"))
    return _PAGE.format(branches=" UNION ALL ".join(branches))


# Windows closed before a cutoff, the longest closed first: one range of the closes index.
_CLOSED_BEFORE = """
    SELECT p.study_id, p.full_name, s.code, d.timepoint, d.opens, d.closes, 0
    FROM (
        SELECT d.* FROM outcomes_duewindow d WHERE d.closes < %(cutoff)s::date {scope}
        ORDER BY d.closes, d.study_id, d.rank LIMIT %(limit)s
    ) d
    JOIN patients_patient p ON p.id = d.patient_id
    JOIN accounts_site s ON s.id = d.site_id
    ORDER BY d.closes, d.study_id, d.rank
"""
# Awaiting the index procedure: outcomes.AwaitingProcedure, kept current by the same triggers.
_AWAITING = """
    SELECT p.study_id, p.full_name, s.code, a.enrolment_date, a.consented, a.total
    FROM (
        SELECT a.*, count(*) OVER () AS total FROM outcomes_awaitingprocedure a WHERE true {scope}
        ORDER BY a.enrolment_date, a.study_id LIMIT %(cap)s
    ) a
    JOIN patients_patient p ON p.id = a.patient_id
    JOIN accounts_site s ON s.id = a.site_id
    ORDER BY a.enrolment_date, a.study_id
"""


def _scope_sql(user: User, site_id: int | None, alias: str = "p") -> tuple[str, dict[str, object]]:
    """(filter, params) on `alias`.site_id for the user's sites and the site filter."""
    sql, params = "", {}
    if not user.sees_all_sites:
        sql += f" AND {alias}.site_id = ANY(ARRAY(SELECT us.site_id FROM accounts_user_sites us WHERE us.user_id = %(user)s))"
        params["user"] = user.pk
    if site_id is not None:
        sql += f" AND {alias}.site_id = %(site)s"
        params["site"] = site_id
    return sql, params


def _due_visit(row: tuple) -> DueVisit:
    sid, name, site, tp, opens, closes, grp = row
    return DueVisit(sid, name, site, tp, visit_label(tp), opens, closes, GROUPS[grp])


class DueVisitRows:
    """The filtered due visits as a sliceable sequence for django.core.paginator.Paginator:
    count() is the sum of the group counts (already read); the first page came with the
    counts; any other slice is one LIMIT/OFFSET query."""

    def __init__(self, sql: str, params: dict[str, object], count: int, first: list[DueVisit]) -> None:
        self._sql, self._params, self._count, self._first = sql, params, count, first

    def count(self) -> int:
        return self._count

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, item: slice) -> list[DueVisit]:
        if not isinstance(item, slice):
            raise TypeError("DueVisitRows supports slices only")
        start, stop = item.start or 0, self._count if item.stop is None else item.stop
        if stop <= start:
            return []
        if start == 0 and stop <= PAGE_SIZE:
            return self._first[:stop]
        return _rows(self._sql, {**self._params, "limit": stop - start, "offset": start})


def _rows(sql: str, params: dict[str, object]) -> list[DueVisit]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [_due_visit(row) for row in cursor.fetchall()]


def _due_params(user: User, today: datetime.date, site_id: int | None, timepoint: str | None) -> tuple[str, dict]:
    """(filter on outcomes_duewindow d, params) for the user's sites and the site and visit filters."""
    scope, params = _scope_sql(user, site_id, alias="d")
    if timepoint:
        scope += " AND d.timepoint = %(timepoint)s"
        params["timepoint"] = timepoint
    params.update(
        {
            "today": today,
            "week": today + datetime.timedelta(days=WEEK_DAYS),
            "horizon": today + datetime.timedelta(days=DUE_HORIZON_DAYS),
        }
    )
    return scope, params


def worklist(
    user: User,
    today: datetime.date | None = None,
    *,
    site_id: int | None = None,
    timepoint: str | None = None,
    group: str | None = None,
) -> Worklist:
    """Visits overdue or due within DUE_HORIZON_DAYS at the user's sites, grouped, counted and pageable,
    and the patients still awaiting their index procedure.

    Two queries whatever the number of patients: the group counts with the first page of
    visits (one statement), and the awaiting list (capped, with its total); a later page
    is one more.
    Patients who died, whose follow-up ended or whose latest consent stops new data are
    never listed: nobody should call them.
    """
    today = today or dates.today()
    if connection.vendor != "postgresql":
        return portable_worklist(user, today, site_id=site_id, timepoint=timepoint, group=group)
    scope, params = _due_params(user, today, site_id, timepoint)
    page_sql = _page_sql(scope, group)
    with connection.cursor() as cursor:  # the counts (first row) and the first page in one statement
        cursor.execute(
            f"({_COUNTS.format(scope=scope)}) UNION ALL (SELECT *, NULL, NULL, NULL, NULL FROM ({page_sql}) page)",
            {**params, "limit": PAGE_SIZE, "offset": 0},
        )
        rows = cursor.fetchall()
        counts = dict(zip(GROUPS, next(row[7:] for row in rows if row[7] is not None), strict=True))
        first = [_due_visit(row[:7]) for row in rows if row[7] is None]
        awaiting_scope, awaiting_params = _scope_sql(user, site_id, alias="a")
        cursor.execute(_AWAITING.format(scope=awaiting_scope), {**awaiting_params, "cap": AWAITING_CAP})
        awaiting_rows = cursor.fetchall()
    awaiting = [AwaitingPatient(*row[:5]) for row in awaiting_rows]
    awaiting_total = awaiting_rows[0][5] if awaiting_rows else 0
    count = counts[group] if group else sum(counts.values())
    return Worklist(counts, DueVisitRows(page_sql, params, count, first), awaiting, awaiting_total)


def closed_before(user: User, cutoff: datetime.date, limit: int, today: datetime.date | None = None) -> list[DueVisit]:
    """The worklist's overdue visits whose window closed before `cutoff`, the longest closed first
    (then study ID, visit), at most `limit`. One query (an index range read up to `limit` rows)."""
    today = today or dates.today()
    if connection.vendor != "postgresql":
        overdue = portable_worklist(user, today, site_id=None, timepoint=None, group=OVERDUE).visits
        rank = {name: i for i, name in enumerate(VISIT_WINDOWS)}
        old = sorted((v for v in overdue if v.closes < cutoff), key=lambda v: (v.closes, v.study_id, rank[v.timepoint]))
        return old[:limit]
    scope, params = _scope_sql(user, None, alias="d")
    return _rows(_CLOSED_BEFORE.format(scope=scope), {**params, "cutoff": cutoff, "limit": limit})


def portable_worklist(
    user: User, today: datetime.date, *, site_id: int | None, timepoint: str | None, group: str | None
) -> Worklist:
    """The worklist through the ORM, for SQLite (the local demo: no arrays, LATERAL or date arithmetic in
    SQL), by the same rules; a test compares it with the SQL path on PostgreSQL. Reads every patient:
    fine for a demo, not for a registry (which runs on PostgreSQL)."""
    patients = patients_for(user).filter(death_date__isnull=True, follow_up_ended__isnull=True)
    if site_id is not None:
        patients = patients.filter(site_id=site_id)
    patients = patients.select_related("site").prefetch_related("consents", "followups", "procedures")
    week, horizon = today + datetime.timedelta(days=WEEK_DAYS), today + datetime.timedelta(days=DUE_HORIZON_DAYS)
    due: list[DueVisit] = []
    awaiting: list[AwaitingPatient] = []
    for p in patients:
        consents = sorted(p.consents.all(), key=lambda c: (c.signed_date, c.pk))
        latest = consents[-1] if consents else None
        visits = list(p.followups.all())
        if any(c.withdrawal_scope == Consent.WithdrawalScope.REMOVE_DATA for c in consents):
            continue
        if latest is not None and latest.withdrawal_scope in NO_MORE_DATA:
            continue
        if any(v.status in FOLLOW_UP_ENDED for v in visits):
            continue
        index = next((x.procedure_date for x in p.procedures.all() if x.procedure_number == 1), None)
        consented = bool(latest and latest.scope_registry)
        if index is None:
            awaiting.append(AwaitingPatient(p.study_id, p.full_name, p.site.code, p.enrolment_date, consented))
            continue
        if not consented:
            continue
        recorded = {v.timepoint for v in visits}
        for name in VISIT_WINDOWS:
            if name in recorded or (timepoint and name != timepoint):
                continue
            opens, closes = visit_window(name, index)
            if opens > horizon:
                continue
            grp = OVERDUE if closes < today else DUE_TODAY if opens <= today else THIS_WEEK if opens <= week else LATER
            due.append(DueVisit(p.study_id, p.full_name, p.site.code, name, visit_label(name), opens, closes, grp))
    rank = {name: i for i, name in enumerate(VISIT_WINDOWS)}

    def order(v: DueVisit) -> tuple[Any, ...]:
        days = (
            (today - v.closes).days
            if v.group == OVERDUE
            else (v.closes - today).days
            if v.group == DUE_TODAY
            else (v.opens - today).days
        )
        return (GROUPS.index(v.group), days, v.study_id, rank[v.timepoint])

    due.sort(key=order)
    counts = dict.fromkeys(GROUPS, 0)
    for v in due:
        counts[v.group] += 1
    shown = [v for v in due if not group or v.group == group]
    awaiting.sort(key=lambda a: (a.enrolment_date, a.study_id))
    return Worklist(counts, shown, awaiting[:AWAITING_CAP], len(awaiting))  # type: ignore[arg-type]


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

    @property
    def band(self) -> str:
        """The recorded ODI's disability band, in neutral words ("" when not scored)."""
        return str(BAND_LABELS.get(odi_band(self.visit.odi_score), "")) if self.visit else ""


def visit_rows(patient: Patient, today: datetime.date | None = None) -> list[VisitRow]:
    """One row per timepoint: the recorded visit, or whether it is due (uses the prefetched rows)."""
    today = today or dates.today()
    index = next((p.procedure_date for p in patient.procedures.all() if p.procedure_number == 1), None)
    visits = {f.timepoint: f for f in patient.followups.all()}
    latest = patient.current_consent()
    stopped = patient.is_deceased or patient.data_removed or bool(latest and latest.withdrawal_scope in NO_MORE_DATA)
    stopped = stopped or any(f.status in FOLLOW_UP_ENDED for f in visits.values()) or bool(patient.follow_up_ended)
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
