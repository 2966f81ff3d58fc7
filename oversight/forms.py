import datetime
from typing import Any

from django import forms
from django.apps import apps
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import Site, User
from accounts.permissions import visible_sites
from audit.display import record_name
from audit.models import AuditEvent
from oversight.selectors import ConsentState
from patients.models import ConsentVersion

DATE = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")  # what <input type=date> reads
# Models whose rows the trail follows; the choice list needs no query.
AUDITED_APPS = ("patients", "procedures", "outcomes", "accounts")


def _model_choices() -> list[tuple[str, str]]:
    """The audited models by their names ("Follow-up visit"), in the page's language."""
    labels = [
        m._meta.label
        for a in AUDITED_APPS
        for m in apps.get_app_config(a).get_models()
        if not getattr(m, "derived", False)  # tables the triggers derive (worklist, dashboard) have no trail
    ]
    named = sorted(((label, record_name(label)) for label in labels), key=lambda choice: choice[1])
    return [("", _("All records")), *named]


class TrailFilterForm(forms.Form):
    username = forms.CharField(required=False, label=gettext_lazy("User"))
    model = forms.ChoiceField(required=False, label=gettext_lazy("Record"), choices=_model_choices)
    field = forms.CharField(
        required=False,
        label=gettext_lazy("Field changed"),
        help_text=gettext_lazy("Its label or name, e.g. ECOG performance status"),
    )
    action = forms.ChoiceField(
        required=False,
        label=gettext_lazy("Action"),
        choices=[("", gettext_lazy("All actions")), *AuditEvent.Action.choices],
    )
    study_id = forms.CharField(required=False, label=gettext_lazy("Study ID"))
    date_from = forms.DateField(required=False, label=gettext_lazy("From (UTC)"), widget=DATE)
    date_to = forms.DateField(required=False, label=gettext_lazy("To (UTC)"), widget=DATE)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", _("The end of the date range is before its start."))
        if end == datetime.date.max:  # the search ends at the next midnight, which does not exist
            self.add_error("date_to", _("Enter a date before 9999-12-31."))
        return data


class RegisterFilterForm(forms.Form):
    STATES = [
        ("", gettext_lazy("Any state")),
        *ConsentState.choices,
        ("reconsent", gettext_lazy("Needs re-consent to the current version")),
    ]

    site = forms.ModelChoiceField(
        queryset=Site.objects.none(),
        required=False,
        to_field_name="code",
        empty_label=gettext_lazy("All sites"),
        label=gettext_lazy("Site"),
    )
    version = forms.ModelChoiceField(
        queryset=ConsentVersion.objects.all(),
        required=False,
        to_field_name="version",
        empty_label=gettext_lazy("All versions"),
        label=gettext_lazy("Version"),
    )
    state = forms.ChoiceField(choices=STATES, required=False, label=gettext_lazy("State"))

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["site"].queryset = visible_sites(user)  # type: ignore[attr-defined]


class DeletePatientForm(forms.Form):
    """Deleting a patient (or, with `what`, one record): a reason and an explicit confirmation."""

    reason = forms.CharField(label=gettext_lazy("Reason for deletion"), widget=forms.Textarea(attrs={"rows": 3}))
    confirm = forms.BooleanField(
        label=gettext_lazy(
            "I understand that the patient and all their records are deleted; the values stay in the audit trail."
        )
    )
    # the record kinds of oversight.views.DELETABLE, in words
    KINDS = {
        "patient": gettext_lazy("patient"),
        "procedure": gettext_lazy("procedure"),
        "visit": gettext_lazy("visit"),
        "consent": gettext_lazy("consent record"),
    }

    def __init__(self, *args: Any, what: str = "patient", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        kind = self.KINDS.get(what, what)
        self.fields["reason"].error_messages["required"] = _(
            "Give the reason for deleting this %(what)s; it goes into the audit trail."
        ) % {"what": kind}
        if what != "patient":
            self.fields["confirm"].label = _(
                "I understand that this %(what)s and everything recorded under it are deleted; "
                "the values stay in the audit trail."
            ) % {"what": kind}
