"""Template filters of the number rule (`registry.measures`): ``{% load measures %}``, then
``{{ visit.vas|record:"vas" }}`` for one record's value, ``{{ mean|statistic:"odi" }}`` for a statistic."""

from typing import Any

from django import template

from registry import measures

register = template.Library()


@register.filter
def record(value: Any, measure: str) -> str:
    return measures.record(value, measure)


@register.filter
def statistic(value: Any, measure: str) -> str:
    return measures.statistic(value, measure)
