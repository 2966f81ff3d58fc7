"""Request hygiene and fault handling shared by every page.

- `BadInputMiddleware`: a NUL character, or bytes that are not UTF-8, in the
  path, the query string or a form field gets a 400 with a message naming the
  parameter. PostgreSQL cannot store NUL, and such input used to reach a query
  and answer 500.
- `NoStoreMiddleware`: `Cache-Control: no-store` (Django's never-cache set) on
  every response to a logged-in user, because those pages carry patient data.
- `DatabaseUnavailableMiddleware` and `server_error` (the project's handler500):
  when the database cannot be reached (`OperationalError` / `InterfaceError`),
  in a view or in a middleware such as the session's, the user gets the styled
  503 page (templates/503.html, which never touches the database) and never a
  traceback.
"""

import logging
import sys
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.cache import add_never_cache_headers
from django.utils.html import escape
from django.utils.translation import gettext as _
from django.views import defaults

logger = logging.getLogger("registry.faults")

DATABASE_DOWN = (OperationalError, InterfaceError)


def database_unavailable(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(render_to_string("503.html", request=request), status=503)
    response["Retry-After"] = "60"
    add_never_cache_headers(response)
    return response


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, DATABASE_DOWN):
            logger.error("database unavailable during %s %s: %s", request.method, request.path, exception)
            return database_unavailable(request)
        return None


def server_error(request: HttpRequest, template_name: str = "500.html") -> HttpResponse:
    """handler500: the 503 page if the database is down (raised outside a view), else Django's 500."""
    if isinstance(sys.exc_info()[1], DATABASE_DOWN):
        return database_unavailable(request)
    return defaults.server_error(request, template_name)


def _bad(raw: bytes) -> str | None:
    if b"\x00" in raw:
        return _("contains a NUL character")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return _("contains bytes that are not valid UTF-8 text")
    return None


def _encoded_pairs(raw: str) -> list[tuple[bytes, bytes]]:
    pairs = []
    for chunk in raw.replace(";", "&").split("&"):
        name, _sep, value = chunk.partition("=")
        pairs.append((unquote_to_bytes(name.replace("+", " ")), unquote_to_bytes(value.replace("+", " "))))
    return pairs


class BadInputMiddleware:
    FORM = "application/x-www-form-urlencoded"

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Before LocaleMiddleware and the session on purpose (nothing may read bad bytes first),
        # so the refusal picks the reader's language itself: the switcher's cookie or the browser's.
        with translation.override(translation.get_language_from_request(request)):
            problem = self.problem(request)
            if problem:
                where, what = problem
                message = _("Bad request: %(where)s %(what)s. Remove it and try again.") % {
                    "where": where,
                    "what": what,
                }
                return HttpResponseBadRequest(
                    f'<!doctype html><html lang="{translation.get_language()}"><title>{escape(_("Bad request"))}</title>'
                    f"<h1>{escape(_('Bad request'))}</h1><p>{escape(message)}</p></html>"
                )
        return self.get_response(request)

    def problem(self, request: HttpRequest) -> tuple[str, str] | None:
        path = request.META.get("PATH_INFO", "").encode("latin-1", "replace")  # WSGI: bytes as latin-1
        if what := _bad(path) or ("\x00" in request.path_info and _("contains a NUL character")):
            return _("the address"), what
        for source, raw in (("query", request.META.get("QUERY_STRING", "")), ("form", None)):
            if raw is None:
                if request.method != "POST":
                    continue
                content_type = request.META.get("CONTENT_TYPE", "")
                if content_type.startswith(self.FORM):
                    raw = request.body.decode("latin-1")
                elif content_type.startswith("multipart/form-data"):
                    for name, values in request.POST.lists():  # already decoded by Django: NUL is what is left
                        if "\x00" in name or any("\x00" in v for v in values):
                            return _("the form field %(name)s") % {"name": repr(name.replace("\x00", ""))}, _(
                                "contains a NUL character"
                            )
                    continue
                else:
                    continue
            for name, value in _encoded_pairs(raw):
                if what := _bad(name) or _bad(value):
                    shown = name.decode("utf-8", "replace").replace("\x00", "")
                    label = (
                        _("the query parameter %(name)s") if source == "query" else _("the form field %(name)s")
                    ) % {"name": repr(shown)}
                    return label, what
        return None


class NoStoreMiddleware:
    """Pages for a logged-in user are never stored by the browser or a proxy."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        try:
            authenticated = bool(user is not None and user.is_authenticated)
        except DATABASE_DOWN:
            authenticated = True  # cannot tell: err on the side of not caching
        if authenticated and "no-store" not in response.get("Cache-Control", ""):
            add_never_cache_headers(response)
        return response
