"""Derived values of the CRF, computed in one place.

Pure functions on plain values (no database): models, forms, the importer,
exports and the dashboard all call these, so a derived value can never be
computed two ways.
"""

import datetime
from collections.abc import Iterable, Sequence
from decimal import Decimal

DAYS_PER_MONTH = 30.4375  # 365.25 / 12; summary.md: months = days / 30.4375

# CDC 2022 Clinical Practice Guideline, oral MME conversion factors per mg/day
# (transdermal fentanyl: per mcg/h). Buprenorphine and "other" have no factor,
# so a visit with them has unknown MME (None), never a partial sum.
MME_FACTOR_TABLE = "CDC-2022"
MME_FACTORS: dict[str, Decimal] = {
    "codeine": Decimal("0.15"),
    "hydrocodone": Decimal("1.0"),
    "hydromorphone": Decimal("5.0"),
    "methadone": Decimal("4.7"),
    "morphine": Decimal("1.0"),
    "oxycodone": Decimal("1.5"),
    "oxymorphone": Decimal("3.0"),
    "tapentadol": Decimal("0.4"),
    "tramadol": Decimal("0.2"),
    "fentanyl_td": Decimal("2.4"),
}

ODI_SECTIONS = 10
ODI_MAX_PER_SECTION = 5

# Source study: these types are always major or always minor; csf_leak and
# other are graded by the investigator.
MAJOR_COMPLICATIONS = frozenset(
    {"nerve_root_injury", "cauda_equina", "pulmonary_embolism", "intestinal_rupture", "perioperative_death"}
)
MINOR_COMPLICATIONS = frozenset({"urinary_retention", "wound_hematoma", "infection"})


def age_in_years(born: datetime.date, on: datetime.date) -> int:
    """Whole years completed on `on` (a birthday on 29 February counts from 1 March)."""
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def days_between(start: datetime.date, end: datetime.date) -> int:
    return (end - start).days


def months_between(start: datetime.date, end: datetime.date) -> float:
    return days_between(start, end) / DAYS_PER_MONTH


def odi_score(answers: Sequence[int | None], min_answered: int = 9) -> float | None:
    """Oswestry Disability Index 2.1a, in % (unrounded).

    sum / (5 x sections answered) x 100, or None when fewer than
    `min_answered` sections are answered.
    """
    if len(answers) != ODI_SECTIONS:
        raise ValueError(f"ODI has {ODI_SECTIONS} sections, got {len(answers)}")
    given = [a for a in answers if a is not None]
    if len(given) < min_answered or not given:
        return None
    return 100 * sum(given) / (ODI_MAX_PER_SECTION * len(given))  # 100 * first: 7/50 -> 14.0, not 14.000000000000002


def odi_band(score: float | None) -> str:
    if score is None:
        return ""
    for upper, band in ((20, "minimal"), (40, "moderate"), (60, "severe"), (80, "crippled")):
        if score <= upper:
            return band
    return "bed-bound"


def opioid_count(drugs: Iterable[str]) -> int:
    """The source study's outcome: the number of opioids prescribed."""
    return sum(1 for _ in drugs)


def mme_per_day(medications: Iterable[tuple[str, Decimal | float | int | str]]) -> float | None:
    """Oral morphine milligram equivalents per day, CDC 2022 factors.

    None (unknown) as soon as one drug has no factor. No opioids is 0.
    """
    total = Decimal(0)
    for drug, dose in medications:
        factor = MME_FACTORS.get(drug)
        if factor is None:
            return None
        total += factor * Decimal(str(dose))
    return float(total)


def complication_severity(complication_type: str, entered: str = "") -> str:
    """ "major"/"minor" derived for the study's eight types; the entered value otherwise."""
    if complication_type in MAJOR_COMPLICATIONS:
        return "major"
    if complication_type in MINOR_COMPLICATIONS:
        return "minor"
    return entered


# Visit windows in days from the index procedure (domain.md).
VISIT_WINDOWS: dict[str, tuple[int, int]] = {
    "baseline": (-14, 0),
    "post": (0, 3),
    "w1": (5, 10),
    "m1": (21, 45),
    "m3": (75, 105),
    "m6": (150, 210),
    "m12": (330, 400),
}


def visit_window(timepoint: str, index_date: datetime.date) -> tuple[datetime.date, datetime.date]:
    low, high = VISIT_WINDOWS[timepoint]
    return index_date + datetime.timedelta(days=low), index_date + datetime.timedelta(days=high)


def in_window(timepoint: str, index_date: datetime.date, visit_date: datetime.date) -> bool:
    low, high = visit_window(timepoint, index_date)
    return low <= visit_date <= high
