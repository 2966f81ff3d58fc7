"""English choice labels for what is stored in one language (the audit trail's object_repr).

`get_FOO_display()` under `translation.override("en")` rebuilds the field's choices dictionary and
resolves every lazy label on each call: 40 % of an import's CPU went there (a model's `__str__` is
written with every trail entry). The labels are fixed by the code, so they are read once per field."""

from __future__ import annotations

import functools
from typing import Any

from django.db import models
from django.utils import translation


@functools.cache
def _english_labels(model: type[models.Model], field_name: str) -> dict[Any, str]:
    field = model._meta.get_field(field_name)
    with translation.override("en"):
        return {value: str(label) for value, label in field.flatchoices}  # type: ignore[attr-defined]


def english_display(instance: models.Model, field_name: str) -> str:
    """What `instance.get_<field_name>_display()` gives in English (the stored value itself if not a choice)."""
    value = getattr(instance, field_name)
    labels = _english_labels(type(instance)._meta.concrete_model, field_name)
    try:
        return labels[value]
    except (KeyError, TypeError):  # as Django's: a value outside the choices reads as itself
        return str(value)
