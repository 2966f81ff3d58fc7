from django.conf import settings
from django.http import HttpRequest


def registry(request: HttpRequest) -> dict[str, object]:
    def language_choice() -> str:
        """What the header switcher shows as chosen: the signed-in user's stored language, else the
        switcher's cookie (which LocaleMiddleware follows); blank means "follow the browser". A callable,
        read only when a page shows the switcher: the 503 page must not touch the user or the session."""
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and getattr(user, "language", ""):
            return user.language
        return request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME, "")

    return {
        "REGISTRY_VERSION": settings.REGISTRY_VERSION,
        "LANGUAGES": settings.LANGUAGES,
        "language_choice": language_choice,
    }
