from django.conf import settings
from django.http import HttpRequest


def registry(request: HttpRequest) -> dict[str, object]:
    # The header switcher shows what the reader chose: the signed-in user's stored language,
    # else the switcher's cookie; blank means "follow the browser".
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        choice = getattr(user, "language", "")
    else:
        choice = request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME, "")
    return {"REGISTRY_VERSION": settings.REGISTRY_VERSION, "LANGUAGES": settings.LANGUAGES, "language_choice": choice}
