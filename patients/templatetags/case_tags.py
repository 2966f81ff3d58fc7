from django import template

from registry.fields import split_codes

register = template.Library()


@register.filter
def codes(value: str) -> str:
    """A multi-choice value "S1|S2" as a nurse reads it: "S1, S2"."""
    return ", ".join(split_codes(value)) or "—"
