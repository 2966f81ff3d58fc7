"""After the password: the second factor, then a forced password change, before any other page.
And the signed-in user's own language, over the browser's."""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import translation
from django.utils.http import urlencode

from accounts.second_factor import has_second_factor, needs_verification


class AccountGateMiddleware:
    """Sends a logged-in user who has not finished logging in to the page that finishes it.

    Needs django_otp.middleware.OTPMiddleware before it (request.user.is_verified).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            target = self._gate(request)
            if target is not None and request.path != target:
                return redirect(f"{target}?{urlencode({'next': request.get_full_path()})}")
        return self.get_response(request)

    def _gate(self, request: HttpRequest) -> str | None:
        path = request.path
        if path in (reverse("logout"), reverse("set_language")) or path.startswith(str(settings.STATIC_URL)):
            return None
        user = request.user
        if not user.is_verified() and needs_verification(user, request.session):  # type: ignore[union-attr]
            if has_second_factor(user):
                return reverse("second_factor_verify")
            enrol = reverse("second_factor_enrol")
            return None if path == enrol else enrol
        if user.must_change_password:  # type: ignore[union-attr]
            open_paths = (reverse("password_change"), reverse("password_change_done"))
            return None if path in open_paths else reverse("password_change")
        return None


class UserLanguageMiddleware:
    """Activates the language a signed-in user chose (User.language) for the whole request.

    Goes after AuthenticationMiddleware; LocaleMiddleware before it has already picked the
    browser's language, which stays when the user's choice is blank. LocaleMiddleware's
    response half then labels the response (Content-Language) with whatever is active.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and user.language:
            translation.activate(user.language)
            request.LANGUAGE_CODE = translation.get_language()
        return self.get_response(request)
