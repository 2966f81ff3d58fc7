"""System checks for the clinical settings that decide how outcomes are scored."""

from typing import Any

from django.conf import settings
from django.core.checks import Error, register


@register()
def odi_rule_is_possible(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """ODI 2.1a has ten sections: a minimum of 0 would score an empty form, 11 would score nothing."""
    value = getattr(settings, "ODI_MIN_SECTIONS", None)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 10:
        return []
    return [
        Error(
            f"ODI_MIN_SECTIONS is {value!r}; it must be a whole number from 1 to 10 (sections of the ODI that must "
            "be answered for a score, 9 by default).",
            id="outcomes.E001",
        )
    ]
