from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.signals import user_login_failed
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST
from django.views.i18n import set_language
from django_otp import login as otp_login

from accounts import second_factor
from accounts.forms import CodeForm, EnrolForm, PasswordConfirmForm
from accounts.models import User
from accounts.signals import account_changed


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Send each role to the page it starts its day on."""
    user = request.user
    target = "patients:worklist" if user.can_enter_data else "dashboard:index"  # type: ignore[union-attr]
    if getattr(user, "is_monitor", False):
        target = "oversight:monitoring"
    try:
        return redirect(reverse(target))
    except NoReverseMatch:  # that part of the app is not installed yet
        return render(request, "home.html")


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return reverse("home")


def _changed(request: HttpRequest, changes: dict[str, list[Any]], reason: str) -> None:
    user = request.user
    account_changed.send(type(user), target=user, actor=user, changes=changes, reason=reason)


class PasswordChangeView(auth_views.PasswordChangeView):
    """The user's own password change; it lifts a forced change and goes into the trail."""

    success_url = reverse_lazy("password_change_done")

    def form_valid(self, form: Any) -> HttpResponse:
        user = form.user
        forced = user.must_change_password
        user.must_change_password = False
        response = super().form_valid(form)  # saves the user (and the flag) and keeps the session
        changes: dict[str, list[Any]] = {"password": ["(set)", "(changed by the user)"]}
        if forced:
            changes["must_change_password"] = [True, False]
        _changed(self.request, changes, _("Changed own password"))
        return response


@login_required
@require_http_methods(["GET", "POST"])
def enrol(request: HttpRequest) -> HttpResponse:
    """Add an authenticator app: show its key as QR code and URI, confirm with a code, then recovery codes."""
    user = request.user
    if second_factor.has_second_factor(user):
        return redirect("second_factor_manage")
    device = second_factor.pending_totp(user)
    form = EnrolForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if device.verify_token("".join(form.cleaned_data["code"].split())):
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            codes = second_factor.new_recovery_codes(user)
            otp_login(request, device)
            request.session[second_factor.ENROLLED_SESSION_KEY] = True
            _changed(request, {"second_factor": [None, "authenticator app"]}, _("Enrolled a second factor"))
            return render(
                request, "accounts/recovery_codes.html", {"codes": codes, "fresh": True, "next": _next(request)}
            )
        form.add_error("code", _("That code is not right. Check the app shows the PSP registry entry and try again."))
    url = second_factor.config_url(device)
    context = {"form": form, "otpauth_url": url, "qr_svg": second_factor.qr_svg(url), "next": _next(request)}
    return render(request, "accounts/enrol.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def verify(request: HttpRequest) -> HttpResponse:
    """The second step of logging in: a code from the app or a recovery code."""
    user = request.user
    if user.is_verified():  # type: ignore[union-attr]
        return redirect(_next(request))
    if not second_factor.has_second_factor(user):
        return redirect(f"{reverse('second_factor_enrol')}?{urlencode({'next': _next(request)})}")
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = second_factor.verify(user, form.cleaned_data["code"])
        if device is not None:
            otp_login(request, device)
            return redirect(_next(request))
        # A wrong code counts as a failed log-in: into the trail and towards the lockout.
        user_login_failed.send(sender=__name__, credentials={"username": user.get_username()}, request=request)
        form.add_error("code", _("That code is not right, or it was already used. Wait for a new code and try again."))
    return render(request, "accounts/verify.html", {"form": form, "next": _next(request)})


@login_required
@require_http_methods(["GET", "POST"])
def manage(request: HttpRequest) -> HttpResponse:
    """Recovery codes (list, regenerate) and removal of the second factor."""
    user = request.user
    if not second_factor.has_second_factor(user):
        return redirect("second_factor_enrol")
    if request.method == "POST" and request.POST.get("action") == "regenerate":
        codes = second_factor.new_recovery_codes(user)
        _changed(request, {"recovery_codes": ["(old set)", "(new set)"]}, _("Regenerated recovery codes"))
        return render(request, "accounts/recovery_codes.html", {"codes": codes, "fresh": True, "next": reverse("home")})
    context = {
        "codes": second_factor.recovery_codes(user),
        "required": user.requires_second_factor,  # type: ignore[union-attr]
        "remove_form": PasswordConfirmForm(user),
    }
    return render(request, "accounts/second_factor.html", context)


@login_required
@require_http_methods(["POST"])
def remove(request: HttpRequest) -> HttpResponse:
    user = request.user
    form = PasswordConfirmForm(user, request.POST)
    if not form.is_valid():
        context = {
            "codes": second_factor.recovery_codes(user),
            "required": user.requires_second_factor,  # type: ignore[union-attr]
            "remove_form": form,
        }
        return render(request, "accounts/second_factor.html", context, status=400)
    second_factor.remove_all(user)
    request.session[second_factor.ENROLLED_SESSION_KEY] = False
    _changed(request, {"second_factor": ["authenticator app", None]}, _("Removed own second factor"))
    messages.success(request, _("Your second factor was removed."))
    return redirect("home")


@require_POST
def language(request: HttpRequest) -> HttpResponse:
    """The header switcher: stores a signed-in user's choice on her account and, for everyone
    (the log-in page too), in Django's language cookie; blank means "follow the browser"."""
    code = request.POST.get("language", "")
    if code and code not in dict(settings.LANGUAGES):
        return HttpResponseBadRequest(_("language: choose one of the languages offered."))
    user = request.user
    if user.is_authenticated and user.language != code:  # type: ignore[union-attr]
        old = user.language  # type: ignore[union-attr]
        user.language = code  # type: ignore[union-attr]
        user.save(update_fields=["language"])
        _changed(request, {"language": [old, code]}, _("Changed own language"))
    # Django's own view sets the cookie and follows a safe "next" (else the referring page).
    response = set_language(request)
    if not code:
        response.delete_cookie(settings.LANGUAGE_COOKIE_NAME)
    return response


# One page per role (templates/guide/<role>.html), titled with the role's own label.
GUIDES = {
    role.value: role.label for role in (User.Role.NURSE, User.Role.INVESTIGATOR, User.Role.MONITOR, User.Role.ADMIN)
}


@login_required
def guide(request: HttpRequest, role: str = "") -> HttpResponse:
    """The user guide: a printable page per role; /help/ opens the reader's own."""
    if not role:
        own = "admin" if request.user.is_registry_admin else request.user.role  # type: ignore[union-attr]
        return redirect("guide_role", role=own)
    if role not in GUIDES:
        raise Http404(_("There is no guide for that role."))
    context = {"guides": list(GUIDES.items()), "role": role, "role_title": GUIDES[role]}
    return render(request, f"guide/{role}.html", context)
