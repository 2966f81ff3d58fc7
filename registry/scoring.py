"""Derived values of the CRF, computed in one place.

Pure functions on plain values (no database): models, forms, the importer,
exports and the dashboard all call these, so a derived value can never be
computed two ways.
"""

import datetime
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

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


# The CDC factors convert oral doses (and transdermal fentanyl in mcg/h): the
# route a factor applies to. A dose given any other way (IV, PCA, subcutaneous)
# has no factor here, so its MME is unknown rather than silently wrong.
FACTOR_ROUTE = {drug: ("transdermal" if drug == "fentanyl_td" else "oral") for drug in MME_FACTORS}


def usual_route(drug: str) -> str:
    """The route a blank route means (data dictionary): transdermal for fentanyl patches, oral otherwise."""
    return "transdermal" if drug == "fentanyl_td" else "oral"


def mme_per_day(medications: Iterable[tuple[str, Decimal | float | int | str] | tuple[str, Any, str]]) -> float | None:
    """Oral morphine milligram equivalents per day, CDC 2022 factors.

    Each item is (drug, daily dose) or (drug, daily dose, route); a blank or
    missing route is the drug's usual one. None (unknown) as soon as one drug
    has no factor for its route (buprenorphine, "other", any IV/SC dose).
    No opioids is 0.
    """
    total = Decimal(0)
    for drug, dose, *rest in medications:
        route = (rest[0] if rest else "") or usual_route(drug)
        factor = MME_FACTORS.get(drug)
        if factor is None or FACTOR_ROUTE[drug] != route:
            return None
        total += factor * Decimal(str(dose))
    return float(total)


def mme_unknown_reason(medications: Iterable[tuple[str, str]]) -> str:
    """Why MME/day is unknown for these (drug, route) pairs, or "" when it is known (shown on the form)."""
    for drug, route in medications:
        route = route or usual_route(drug)
        if drug not in MME_FACTORS:
            return f"{drug}: the CDC 2022 guideline gives no conversion factor"
        if FACTOR_ROUTE[drug] != route:
            return f"{drug} by the {route} route: the CDC factors are for {FACTOR_ROUTE[drug]} doses"
    return ""


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
