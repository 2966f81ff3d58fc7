"""Display rounding for the dashboard (the JSON keeps full precision), by the one number rule
(`registry.measures`: rounded half up, in the active language's format)."""

from typing import Any

from django import template
from django.utils.translation import gettext as _

from procedures.models import levels_display
from registry.measures import DASH, fixed

register = template.Library()


@register.filter
def num(value: float | None, decimals: int = 2) -> str:
    """A number at fixed precision; a dash for an undefined statistic."""
    return fixed(value, int(decimals))


@register.filter
def mean_sd(block: dict[str, Any], decimals: int = 2) -> str:
    if block.get("mean") is None:
        return DASH
    if block.get("sd") is None:
        return num(block["mean"], decimals)
    return f"{num(block['mean'], decimals)} ± {num(block['sd'], decimals)}"


@register.filter
def median_iqr(block: dict[str, Any], decimals: int = 1) -> str:
    """Median [Q1-Q3]; counts print as integers, as the paper does (3.25 prints as 3)."""
    if block.get("median") is None:
        return DASH
    return f"{num(block['median'], decimals)} [{num(block['q1'], decimals)}-{num(block['q3'], decimals)}]"


@register.filter
def value_range(block: dict[str, Any], decimals: int = 0) -> str:
    if block.get("min") is None:
        return DASH
    return f"{num(block['min'], decimals)}-{num(block['max'], decimals)}"


def _between(low: str, high: str) -> str:
    """An interval's two ends, "1.20 to 3.40", in the page's language."""
    return _("%(low)s to %(high)s") % {"low": low, "high": high}


@register.filter
def ci(interval: list[float] | None, decimals: int = 2) -> str:
    if interval is None:
        return DASH
    return _between(num(interval[0], decimals), num(interval[1], decimals))


@register.filter
def pvalue(p: float | None) -> str:
    if p is None:
        return DASH
    return "< " + fixed(0.001, 3) if p < 0.001 else fixed(p, 3)


@register.filter
def of(count: int, total: int) -> str:
    """ "9/10 (90%)"."""
    if not total:
        return f"{count}/{total}"
    return f"{count}/{total} ({fixed(100 * count / total, 0)}%)"


@register.filter
def get_item(container: Any, key: Any) -> Any:
    """dict[key] or list[index] in a template; the key itself when absent (labels)."""
    try:
        return container[key]
    except (KeyError, IndexError, TypeError):
        return key


@register.filter
def percent(value: float | None, decimals: int = 1) -> str:
    """A proportion as a percentage: 0.9625 -> "96.3%"."""
    if value is None:
        return DASH
    return f"{fixed(100 * value, int(decimals))}%"


@register.filter
def percent_ci(interval: list[float] | None, decimals: int = 1) -> str:
    if interval is None:
        return DASH
    return _between(percent(interval[0], decimals), percent(interval[1], decimals))


@register.filter
def day_interval(interval: list[float | None] | None) -> str:
    """A median's interval in days; an end that is never reached prints as "not reached"."""
    if interval is None:
        return DASH
    return _between(*(str(_("not reached")) if v is None else fixed(v, 0) for v in interval))


@register.filter
def levels(pattern: str) -> str:
    """A levels-treated pattern of Table 1 ("S1|S2", the summary's key) as pages show levels: "S1–S2"."""
    return levels_display(pattern)
