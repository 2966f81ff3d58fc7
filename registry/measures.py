"""One way to show a number: the display rule of every measure, used by the forms,
the pages, the dashboard, the report and the audit trail.

The rule follows the data dictionary (``crf/data_dictionary.csv``) and the source
study's tables:

- **records** (one patient's value) read at the precision they were entered in:
  a VAS entered as 7 reads 7 and 7.5 reads 7.5 (one decimal allowed), a dose of
  60 reads 60, not 60.000; integers as integers. Derived values have no entered
  precision, so they get a fixed one: the ODI score two decimals (35/45 reads
  77.78, the precision of its statistics, so one visit's score reads the same on
  the visit form, the patient page, the dashboard, the trail and the report),
  MME/day one decimal.
- **statistics** (means, SDs, medians, quartiles, differences and their
  intervals) at the decimals of the source study: VAS and ODI two decimals.

Pages show numbers in the active language's format (Django's `floatformat`,
which rounds half up and localises); files (CSV, JSON) keep full precision, as
the data dictionary's export says.
"""

import decimal
from dataclasses import dataclass
from typing import Any

from django.template.defaultfilters import floatformat

DASH = "–"  # an undefined statistic


@dataclass(frozen=True)
class Rule:
    places: int  # decimals the value is stored or entered with (the data dictionary's precision)
    record: int | None  # fixed decimals of one record's value; None: as entered
    statistic: int  # decimals of means, SDs, medians, quartiles, differences and intervals


RULES: dict[str, Rule] = {
    "vas": Rule(places=1, record=None, statistic=2),
    "odi_score": Rule(places=14, record=2, statistic=2),  # derived, stored unrounded
    "mme_per_day": Rule(places=14, record=1, statistic=1),  # derived, stored unrounded
    "opioid_count": Rule(places=0, record=0, statistic=2),
    "daily_dose": Rule(places=3, record=None, statistic=2),
    "cement_volume_ml": Rule(places=1, record=None, statistic=2),
    "dose_area_product_gycm2": Rule(places=2, record=None, statistic=2),
    "ct_dlp_mgycm": Rule(places=2, record=None, statistic=2),
}
# The dashboard's names of the same measures.
ALIASES = {"odi": "odi_score"}


def rule(measure: str) -> Rule | None:
    """The rule of a measure (a field name such as "vas" or "odi_score", or "odi"); None if it has none."""
    return RULES.get(ALIASES.get(measure, measure))


def number(value: Any) -> decimal.Decimal | None:
    """A value as an exact decimal (a float by its shortest repr); None when it is not a finite number."""
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        exact = decimal.Decimal(str(value))
    except (decimal.InvalidOperation, ValueError):
        return None
    return exact if exact.is_finite() else None


def as_entered(value: Any, places: int | None = None) -> decimal.Decimal | None:
    """A stored decimal without the padding zeros its column adds: 7.0 -> 7, 60.000 -> 60, 7.5 -> 7.5.

    `places` first rounds off float noise (a VAS computed as 35 / 10). None when not a number."""
    exact = number(value)
    if exact is None:
        return None
    if places is not None:
        exact = exact.quantize(decimal.Decimal(1).scaleb(-places), rounding=decimal.ROUND_HALF_UP)
    # normalize() alone writes 60 as 6E+1; quantizing to its own exponent keeps plain digits.
    normal = exact.normalize()
    return normal.quantize(decimal.Decimal(1)) if normal.as_tuple().exponent > 0 else normal  # type: ignore[operator]


def fixed(value: Any, decimals: int, *, localize: bool = True) -> str:
    """A number at fixed decimals, rounded half up, in the active language's format (or plain, for files).

    An undefined value (None) is a dash."""
    exact = number(value)
    if exact is None:
        return DASH if value is None else str(value)
    if localize:
        text = str(floatformat(exact, f"{int(decimals)}"))
    else:  # floatformat's "u" (unlocalised) result, without its per-call formatting machinery (files, the trail)
        text = f"{exact.quantize(decimal.Decimal(1).scaleb(-int(decimals)), rounding=decimal.ROUND_HALF_UP):f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.,") else text  # -0.00 reads 0.00


def record(value: Any, measure: str, *, localize: bool = True) -> str:
    """One record's value of `measure` by its rule; "" for an empty value, the value itself if not a number."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return str(value)
    found = rule(measure)
    if found is None and isinstance(value, str):
        return value  # text of a field without a rule stays as typed (an MRN "007" is not 7)
    exact = number(value)
    if exact is None:
        return str(value)
    if found is None:
        return _plain(as_entered(exact), localize)
    if found.record is None:
        return _plain(as_entered(exact, found.places), localize)
    return fixed(exact, found.record, localize=localize)


def _plain(exact: decimal.Decimal | None, localize: bool) -> str:
    """A decimal with exactly its own digits, localised on pages."""
    if exact is None:
        return ""
    if not localize:  # fixed(exact, its own digits, localize=False), without rounding it again (the trail's names)
        text = f"{exact:f}"
        return text[1:] if text.startswith("-") and not text.strip("-0.,") else text
    digits = max(0, -exact.as_tuple().exponent)  # type: ignore[operator]
    return fixed(exact, digits, localize=localize)


def statistic_decimals(measure: str) -> int:
    """Decimals of the statistics of `measure` (two for one without a rule)."""
    found = rule(measure)
    return found.statistic if found else 2


def statistic(value: Any, measure: str) -> str:
    """A statistic (mean, SD, median, quartile, difference, interval end) of `measure`; a dash if undefined."""
    return fixed(value, statistic_decimals(measure))
