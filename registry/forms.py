"""The shared form kit of every CRF form: date inputs, crispy helpers, the edit
reason and concurrency token, service errors on forms, the error summary, and
formsets of child rows.

Bottom layer: imports Django and the registry kit only, so every clinical app
can use it.
"""

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from crispy_forms.helper import FormHelper
from crispy_forms.layout import Layout
from django import forms
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.utils import get_blank_choice_label
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from registry.errors import StaleEditError
from registry.fields import YES_NO
from registry.measures import as_entered


def date_input() -> forms.DateInput:
    return forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")


def plain_helper(*layout: Any) -> FormHelper:
    """A crispy helper that leaves the <form> tag to the template (several forms share one)."""
    helper = FormHelper()
    helper.form_tag = False
    helper.disable_csrf = True
    if layout:
        helper.layout = Layout(*layout)
    return helper


def yes_no_as_radios(form: forms.ModelForm) -> None:
    """Yes/No questions as two radios: no "---------" option, one tap on a tablet."""
    for name, field in form.fields.items():
        model_field = form._meta.model._meta.get_field(name) if name in form._meta.fields else None
        if isinstance(model_field, models.BooleanField) and isinstance(field, forms.TypedChoiceField):
            field.choices = YES_NO
            field.widget = forms.RadioSelect(choices=YES_NO)


def show_as_entered(form: forms.BaseForm) -> None:
    """Stored decimals in their inputs as entered (registry.measures): a VAS of 7 reads 7, not 7.0; a dose
    of 60 reads 60, not 60.000. The column's padding zeros are not the nurse's precision."""
    for name, field in form.fields.items():
        value = form.initial.get(name)
        if isinstance(field, forms.DecimalField) and isinstance(value, Decimal):
            form.initial[name] = as_entered(value)


def short_blank_choices(form: forms.BaseForm, label: str) -> None:
    """Drop-downs whose empty option is Django's generic one ("- Select an option -", cut off in a
    narrow column) show `label` instead, a short word the caller translates; radios and empty options
    that say something ("Not assessed") keep theirs."""
    generic = {get_blank_choice_label(), "---------"}
    for field in form.fields.values():
        if isinstance(field.widget, forms.RadioSelect) or not isinstance(field.widget, forms.Select):
            continue
        if isinstance(field, forms.ModelChoiceField):
            if field.empty_label is not None:
                field.empty_label = label
        elif isinstance(field, forms.ChoiceField):
            choices = list(field.choices)
            if choices and choices[0][0] in ("", None) and str(choices[0][1]) in generic:
                field.choices = [("", label), *choices[1:]]


class EditMixin(forms.Form):
    """Reason for change and the optimistic-concurrency token of an edit form.

    `version` is the value the editor loaded; the service refuses the save if
    the row moved on since, so a second editor never silently overwrites.
    """

    version = forms.IntegerField(widget=forms.HiddenInput, required=False)
    reason = forms.CharField(
        label=_("Reason for change"),
        help_text=_("Goes into the audit trail, e.g. 'transcription error on the paper CRF'."),
        widget=forms.TextInput(),
    )

    def setup_edit(self, editing: bool) -> None:
        show_as_entered(self)
        if editing:
            self.fields["version"].initial = self.instance.version  # type: ignore[attr-defined]
            self.fields["version"].required = True  # without it a stale edit could not be detected
        else:
            del self.fields["version"], self.fields["reason"]

    @property
    def editing(self) -> bool:
        return "reason" in self.fields

    def edit_kwargs(self) -> dict[str, Any]:
        if not self.editing:
            return {}
        return {"reason": self.cleaned_data["reason"], "expected_version": self.cleaned_data["version"]}


def service_saved(form: forms.BaseForm, write: Callable[[], object]) -> bool:
    """Run a service write; a refusal (stale edit, rule broken) goes onto the form instead of raising."""
    try:
        write()
    except StaleEditError as exc:
        form.add_error(None, str(exc))
    except ValidationError as exc:
        add_service_error(form, exc)
    else:
        return True
    return False


def add_service_error(form: forms.BaseForm, exc: ValidationError) -> None:
    """Show a service's ValidationError at the fields the form has, the rest at the top."""
    if hasattr(exc, "error_dict"):
        for field, errors in exc.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc)


def error_summary(*forms_: Any) -> list[tuple[str, str, str]]:
    """(anchor id, label, message) for every error of the forms and formsets, for the summary at the top."""
    out: list[tuple[str, str, str]] = []

    def one(form: forms.BaseForm, prefix_label: str = "") -> None:
        for name, errors in form.errors.items():
            if name == "__all__":
                out.extend(("", prefix_label.strip(" :"), str(e)) for e in errors)
                continue
            field = form.fields.get(name)
            label = f"{prefix_label}{field.label}" if field else prefix_label
            out.extend((form[name].id_for_label if field else "", label, str(e)) for e in errors)

    for item in forms_:
        if isinstance(item, forms.BaseFormSet):
            out.extend(("", item.summary_title, str(e)) for e in item.non_form_errors())  # type: ignore[attr-defined]
            for number, form in enumerate(item.forms, start=1):
                title = item.summary_title  # type: ignore[attr-defined]
                one(form, gettext("%(title)s row %(number)s: ") % {"title": title, "number": number})
        elif item is not None:
            one(item)
    return out


class ChildRowForm(forms.ModelForm):
    """A child row (leakage, complication, opioid) edited in place: it carries the
    version it was loaded at, so a row someone else changed meanwhile is refused."""

    version = forms.IntegerField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        show_as_entered(self)
        if self.instance.pk is not None:
            self.fields["version"].initial = self.instance.version  # type: ignore[attr-defined]

    def loaded(self) -> models.Model:
        """The row with the version the editor loaded (not the one read again on submit)."""
        if self.instance.pk is not None and self.cleaned_data.get("version") is not None:
            self.instance.version = self.cleaned_data["version"]  # type: ignore[attr-defined]
        return self.instance


class ChildFormSet(forms.BaseInlineFormSet):
    """Rows that belong to one record, keyed by their id: an edit changes the row in
    place, so the trail shows the one changed value, not a delete and a re-create.

    Every form's instance is linked to the parent, so the model's own clean()
    runs while the page is checked. The service, not the formset, writes the rows.
    """

    summary_title = ""

    def add_fields(self, form: forms.BaseForm, index: int | None) -> None:
        super().add_fields(form, index)
        if "DELETE" in form.fields:
            form.fields["DELETE"].label = _("Remove this row")

    def _kept_forms(self) -> list[ChildRowForm]:
        return [
            f
            for f in self.forms
            if f.cleaned_data and not f.cleaned_data.get("DELETE") and (f.instance.pk is not None or f.has_changed())
        ]

    def rows(self) -> list[models.Model]:
        """The rows to keep or add (blank extra rows are ignored), each with the version it was loaded at."""
        return [f.loaded() for f in self._kept_forms()]

    def removed(self) -> list[models.Model]:
        """Saved rows the editor marked for removal."""
        return [f.loaded() for f in self.forms if f.instance.pk is not None and f.cleaned_data.get("DELETE")]

    def kept_values(self, field: str) -> list[Any]:
        return [f.cleaned_data.get(field) for f in self._kept_forms()]


def child_formset(
    parent: type[models.Model], form: type[ChildRowForm], *, title: str, extra: int
) -> type[ChildFormSet]:
    formset = forms.inlineformset_factory(
        parent, form._meta.model, form=form, formset=ChildFormSet, extra=extra, can_delete=True
    )
    formset.summary_title = title
    return formset
