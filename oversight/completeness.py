"""Completeness of follow-up by site and timepoint, for the steering committee.

For each site and timepoint, a visit is **expected** when its window closed
before today (it was due by today), the patient was alive when it closed (no
death date on or before the close), her data were not withdrawn ("no new
data" or "remove data" on any consent) and her follow-up had not ended before
the window closed. Of the expected visits: **completed** (recorded
completed), **missed** (recorded missed or lost to follow-up), **overdue**
(nothing recorded), and **self-reported pending** (0 until self-reports exist).
Rates are over the expected visits.
"""

import datetime
import re
from typing import Any

from outcomes.models import FollowUp, Timepoint
from patients.models import Consent, Patient
from procedures.models import Procedure
from registry.scoring import visit_window

NO_MORE_DATA = (Consent.WithdrawalScope.NO_NEW_DATA, Consent.WithdrawalScope.REMOVE_DATA)
MISSED = (FollowUp.Status.MISSED, FollowUp.Status.LOST)


def _rate(n: int, d: int) -> float | None:
    return round(100 * n / d, 1) if d else None


def _short(label: object) -> str:
    """A time point without its window ("3 months (75-105 days)" -> "3 months"; Chinese uses full-width brackets)."""
    return re.split(r"\s*[(（]", str(label), maxsplit=1)[0]


def by_site(sites: Any, today: datetime.date) -> list[dict[str, Any]]:
    site_list = list(sites)
    patients = {p.pk: p for p in Patient.objects.filter(site__in=site_list).select_related("site")}
    withdrawn = set(
        Consent.objects.filter(patient_id__in=patients, withdrawal_scope__in=NO_MORE_DATA).values_list(
            "patient_id", flat=True
        )
    )
    index = dict(
        Procedure.objects.filter(patient_id__in=patients, procedure_number=1).values_list(
            "patient_id", "procedure_date"
        )
    )
    status = {
        (pid, tp): st
        for pid, tp, st in FollowUp.objects.filter(patient_id__in=patients).values_list(
            "patient_id", "timepoint", "status"
        )
    }
    out = []
    for site in site_list:
        rows = []
        for tp, label in Timepoint.choices:
            counts = dict(expected=0, completed=0, missed=0, overdue=0, self_report_pending=0)
            for pid, p in patients.items():
                if p.site_id != site.pk or pid not in index or pid in withdrawn:
                    continue
                _opens, closes = visit_window(tp, index[pid])
                if closes >= today:
                    continue
                if p.death_date and p.death_date <= closes:
                    continue
                if p.follow_up_ended and p.follow_up_ended < closes:
                    continue
                st = status.get((pid, tp))
                if st in (FollowUp.Status.DECEASED, FollowUp.Status.WITHDRAWN):
                    continue
                counts["expected"] += 1
                if st == FollowUp.Status.COMPLETED:
                    counts["completed"] += 1
                elif st in MISSED:
                    counts["missed"] += 1
                else:
                    counts["overdue"] += 1
            rows.append(
                {
                    "timepoint": tp,
                    "label": _short(label),
                    **counts,
                    "completed_rate": _rate(counts["completed"], counts["expected"]),
                    "missed_rate": _rate(counts["missed"], counts["expected"]),
                    "overdue_rate": _rate(counts["overdue"], counts["expected"]),
                }
            )
        out.append({"site": site.code, "name": site.name, "timepoints": rows})
    return out


def chart(table: list[dict[str, Any]]) -> dict[str, Any]:
    """Chart.js data: completed rate per timepoint, one dataset per site."""
    labels = [_short(label) for _, label in Timepoint.choices]
    return {
        "labels": labels,
        "datasets": [{"label": s["site"], "data": [t["completed_rate"] for t in s["timepoints"]]} for s in table],
    }
