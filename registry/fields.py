"""Model and form support for the CRF's `multichoice` type.

The value is stored as the bundle writes it: codes joined by "|" in the order
the choices are listed (anatomical order for levels), e.g. "S1|S2". Storing
the canonical string keeps filters and group-bys (levels pattern) one query.
"""

import datetime
from collections.abc import Sequence
from typing import Any

from django import forms
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from registry.dates import today

YES_NO = [(True, _("Yes")), (False, _("No"))]


def join_codes(codes: Sequence[str], options: Sequence[tuple[str, str]]) -> str:
    """Canonical "|"-joined string; raises ValueError naming an unknown code."""
    order = [code for code, _ in options]
    unknown = [c for c in codes if c not in order]
    if unknown:
        raise ValueError(f"unknown code {unknown[0]!r}; expected one of {', '.join(order)}")
    return "|".join(c for c in order if c in set(codes))


def split_codes(value: str | None) -> list[str]:
    return [c for c in (value or "").split("|") if c]


class MultiChoiceFormField(forms.MultipleChoiceField):
    widget = forms.CheckboxSelectMultiple

    def __init__(self, *, options: Sequence[tuple[str, str]], **kwargs: Any) -> None:
        self.options = list(options)
        for key in ("max_length", "empty_value"):
            kwargs.pop(key, None)
        if not isinstance(kwargs.get("widget"), (forms.SelectMultiple, forms.CheckboxSelectMultiple)):
            kwargs["widget"] = forms.CheckboxSelectMultiple  # the admin would give a CharField a text input
        super().__init__(choices=self.options, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        return split_codes(value) if isinstance(value, str) else value

    def clean(self, value: Any) -> str:
        codes = super().clean(value)
        return join_codes(codes, self.options)

    def has_changed(self, initial: Any, data: Any) -> bool:
        return super().has_changed(self.prepare_value(initial), data)


class MultiChoiceField(models.CharField):
    """A CharField holding "|"-joined codes from `options`."""

    def __init__(self, *args: Any, options: Sequence[tuple[str, str]] = (), **kwargs: Any) -> None:
        self.options = list(options)
        kwargs.setdefault("max_length", 100)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs["options"] = self.options
        return name, path, args, kwargs

    def validate(self, value: Any, model_instance: Any) -> None:
        super().validate(value, model_instance)
        try:
            canonical = join_codes(split_codes(value), self.options)
        except ValueError as exc:
            # join_codes speaks to importers (English in their reports); the form reader gets her language.
            raise ValidationError(
                gettext("Unknown code %(code)s; expected one of %(codes)s.")
                % {
                    "code": next(c for c in split_codes(value) if c not in dict(self.options)),
                    "codes": ", ".join(c for c, _ in self.options),
                },
                code="invalid_choice",
            ) from exc
        if value and canonical != value:
            raise ValidationError(
                gettext("Codes must be listed once each, in the order %(order)s.")
                % {"order": "|".join(c for c, _ in self.options)}
            )

    def formfield(self, **kwargs: Any) -> Any:
        defaults = {"form_class": MultiChoiceFormField, "options": self.options, "required": not self.blank}
        defaults.update(kwargs)
        return models.Field.formfield(self, **defaults)


def not_in_future(value: datetime.date) -> None:
    if value and value > today():
        raise ValidationError(gettext("Date cannot be in the future."), code="future_date")


def related_or_none(instance: models.Model, name: str) -> Any:
    """The related object `name`, also when it is not saved yet (import), or None."""
    try:
        return getattr(instance, name)
    except ObjectDoesNotExist:
        return None
