"""The dashboard's reads: every value the statistics need, in a fixed number of queries.

One query per table (patients, procedures, leakages, complications, visits)
plus one for the population counts, each filtered by the population as a
subquery, so the query count does not grow with the cohort. Rows come back as
plain dicts (`.values()`), never as model instances walked per patient. The
survival dates ride along: death and the latest consent dates on the patient
rows (subqueries), procedure and discharge dates on the procedure rows, visit
dates and status on the visit rows.
"""

import datetime
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import F, OuterRef, Subquery

from accounts.models import User
from outcomes.cohort import filtered_patients, population_counts
from outcomes.models import FollowUp
from patients.models import Consent
from procedures.models import Complication, Leakage, Procedure

Row = dict[str, Any]


@dataclass(frozen=True)
class CohortRows:
    patients: list[Row]
    excluded_withdrawn: int
    awaiting_consent: int
    procedures: list[Row]
    leakages: list[Row]
    complications: list[Row]
    followups: list[Row]

    @property
    def index_procedures(self) -> dict[int, Row]:
        """Procedure 1 per patient id: Table 1 and the filters use it."""
        return {p["patient_id"]: p for p in self.procedures if p["procedure_number"] == 1}

    def survival_dates(self) -> list[tuple[datetime.date, datetime.date | None, datetime.date]]:
        """(index procedure date, death date, last date known alive) of each patient with an index procedure.

        Last known alive (summary.md "Survival"): the latest of every procedure
        and discharge date, every completed visit's date, and every consent's
        signed and withdrawal dates.
        """
        known: dict[int, list[datetime.date]] = {p["id"]: [] for p in self.patients}
        for proc in self.procedures:
            known[proc["patient_id"]] += [d for d in (proc["procedure_date"], proc["discharge_date"]) if d]
        for visit in self.followups:
            if visit["status"] == FollowUp.Status.COMPLETED and visit["visit_date"]:
                known[visit["patient_id"]].append(visit["visit_date"])
        for p in self.patients:
            known[p["id"]] += [d for d in (p["last_consent_signed"], p["last_consent_withdrawn"]) if d]
        index = self.index_procedures
        return [
            (index[p["id"]]["procedure_date"], p["death_date"], max(known[p["id"]]))
            for p in self.patients
            if p["id"] in index
        ]


def _plain(row: Row) -> Row:
    """Decimals as floats: the statistics work on plain numbers."""
    return {k: float(v) if isinstance(v, Decimal) else v for k, v in row.items()}


def cohort_rows(user: User | None, filters: dict[str, Any]) -> CohortRows:
    """The population (shared cohort filters; `user=None` = study-wide) as value rows. Six queries."""
    population = filtered_patients(user, filters)
    patient_ids = population.values("pk")
    consents = Consent.objects.filter(patient=OuterRef("pk")).order_by()
    patients = list(
        population.order_by("study_id")
        .annotate(
            last_consent_signed=Subquery(consents.order_by("-signed_date").values("signed_date")[:1]),
            last_consent_withdrawn=Subquery(
                consents.filter(withdrawn_date__isnull=False)
                .order_by(F("withdrawn_date").desc())
                .values("withdrawn_date")[:1]
            ),
        )
        .values(
            "id",
            "study_id",
            "site__code",
            "age_at_enrolment",
            "sex",
            "primary_tumour",
            "symptom_onset_date",
            "imaging_date",
            "death_date",
            "last_consent_signed",
            "last_consent_withdrawn",
        )
    )
    procedures = Procedure.objects.filter(patient__in=patient_ids).values(
        "patient_id",
        "procedure_number",
        "procedure_date",
        "approach",
        "levels_treated",
        "technical_success",
        "leakage",
        "cement_volume_ml",
        "operation_time_min",
        "admission_date",
        "discharge_date",
    )
    leakages = Leakage.objects.filter(procedure__procedure_number=1, procedure__patient__in=patient_ids).values(
        "procedure__patient_id", "site", "symptomatic"
    )
    complications = Complication.objects.filter(
        procedure__procedure_number=1, procedure__patient__in=patient_ids
    ).values("procedure__patient_id", "type", "severity", "cirse_grade")
    followups = FollowUp.objects.filter(patient__in=patient_ids).values(
        "patient_id", "timepoint", "status", "visit_date", "vas", "odi_score", "opioid_count", "mme_per_day"
    )
    return CohortRows(
        patients=patients,
        **population_counts(user),
        procedures=[_plain(r) for r in procedures.order_by("patient_id", "procedure_number")],
        leakages=[{"patient_id": r.pop("procedure__patient_id"), **r} for r in leakages.order_by("pk")],
        complications=[{"patient_id": r.pop("procedure__patient_id"), **r} for r in complications.order_by("pk")],
        followups=[_plain(r) for r in followups.order_by("patient_id", "pk")],
    )
