from typing import Any

from django import template

from selfreport import selectors

register = template.Library()


@register.inclusion_tag("selfreport/_pending_list.html", takes_context=True)
def pending_selfreports(context: dict[str, Any]) -> dict[str, Any]:
    user = context["request"].user
    return {"reports": list(selectors.pending_reports(user)[:50])}
