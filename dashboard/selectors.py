"""The dashboard's reads: every value the statistics need, in a fixed number of queries.

One query per table (patients, procedures, leakages, complications, visits)
plus one count, each filtered by the population as a subquery, so the query
count does not grow with the cohort. Rows come back as plain dicts
(`.values()`), never as model instances walked per patient.
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from accounts.models import User
from outcomes.cohort import filtered_patients
from outcomes.models import FollowUp
from procedures.models import Complication, Leakage, Procedure

Row = dict[str, Any]


@dataclass(frozen=True)
class CohortRows:
    patients: list[Row]
    excluded_withdrawn: int
    procedures: list[Row]
    leakages: list[Row]
    complications: list[Row]
    followups: list[Row]

    @property
    def index_procedures(self) -> dict[int, Row]:
        """Procedure 1 per patient id: Table 1 and the filters use it."""
        return {p["patient_id"]: p for p in self.procedures if p["procedure_number"] == 1}


def _plain(row: Row) -> Row:
    """Decimals as floats: the statistics work on plain numbers."""
    return {k: float(v) if isinstance(v, Decimal) else v for k, v in row.items()}


def cohort_rows(user: User | None, filters: dict[str, Any]) -> CohortRows:
    """The population (shared cohort filters; `user=None` = study-wide) as value rows. Six queries."""
    population = filtered_patients(user, filters)
    removed = filtered_patients(user, filters, include_removed=True).removed()
    patient_ids = population.values("pk")
    patients = list(
        population.order_by("study_id").values(
            "id",
            "study_id",
            "site__code",
            "age_at_enrolment",
            "sex",
            "primary_tumour",
            "symptom_onset_date",
            "imaging_date",
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
        "patient_id", "timepoint", "vas", "odi_score", "opioid_count", "mme_per_day"
    )
    return CohortRows(
        patients=patients,
        excluded_withdrawn=removed.count(),
        procedures=[_plain(r) for r in procedures.order_by("patient_id", "procedure_number")],
        leakages=[{"patient_id": r.pop("procedure__patient_id"), **r} for r in leakages.order_by("pk")],
        complications=[{"patient_id": r.pop("procedure__patient_id"), **r} for r in complications.order_by("pk")],
        followups=[_plain(r) for r in followups.order_by("patient_id", "pk")],
    )
