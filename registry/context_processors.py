from django.conf import settings
from django.http import HttpRequest


def registry(request: HttpRequest) -> dict[str, object]:
    return {"REGISTRY_VERSION": settings.REGISTRY_VERSION}
