"""The user's own API tokens: create (shown once), list, revoke."""

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from api.models import ApiToken
from audit.models import AuditEvent
from audit.services import record_event


class TokenForm(forms.Form):
    name = forms.CharField(
        label=gettext_lazy("Name"),
        max_length=100,
        help_text=gettext_lazy("What the token is for, e.g. 'R analysis script'."),
        widget=forms.TextInput(attrs={"class": "form-control"}),
    )


@login_required
def tokens(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None)
    raw = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            token, raw = ApiToken.issue(request.user, form.cleaned_data["name"].strip())
            record_event(
                action=AuditEvent.Action.CREATE,
                user=request.user,
                reason="API token created",
                extra={"api_token": token.prefix, "name": token.name},
            )
            form = TokenForm()
        else:
            status = 400
    mine = ApiToken.objects.filter(user=request.user)
    return render(request, "api/tokens.html", {"form": form, "tokens": mine, "raw": raw}, status=status)


@login_required
@require_POST
def revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)  # only one's own: another's is a 404
    if token.active:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        record_event(
            action=AuditEvent.Action.UPDATE,
            user=request.user,
            reason="API token revoked",  # the trail's text, English like every reason the registry writes
            extra={"api_token": token.prefix, "name": token.name},
        )
    return redirect("api_tokens:tokens")
