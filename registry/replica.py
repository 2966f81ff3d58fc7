"""Which database the reporting reads come from: the read replica when one is configured.

The dashboard, the summary, the publication report and the export only read, and
read a lot. With `DATABASE_REPLICA_URL` set (registry/settings.py) they read from
the alias "replica" (`settings.REPORTING_DATABASE`); everything else reads and
writes the primary: data entry, the worklist, the patient pages, the trail, log-in
and sessions, and every write made on the way of a reporting page (the export log,
the trail's EXPORT entry), whatever the alias of the rows it came from.

The choice is made here only, by a context (`reporting_reads`, the `reporting_view`
decorator, `reporting_stream` for a streamed response) that the router below reads;
code that runs SQL itself takes its connection from `read_alias()`. Outside such a
context every read goes to the primary, so a nurse who saves a visit and opens her
worklist or the patient page sees her save at once. A replica lags the primary by
its replay delay (README "How the registry grows"): a dashboard opened within that
delay of a save may not count it yet.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import wraps
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS

_alias: ContextVar[str | None] = ContextVar("registry_read_alias", default=None)


def reporting_alias() -> str:
    """The alias reporting reads use: "replica" if configured, else the primary."""
    return getattr(settings, "REPORTING_DATABASE", DEFAULT_DB_ALIAS)


def read_alias() -> str:
    """The alias of the reads in progress (for code that opens a cursor itself)."""
    return _alias.get() or DEFAULT_DB_ALIAS


@contextmanager
def reporting_reads() -> Iterator[str]:
    """Send this block's reads to the reporting database; writes still go to the primary."""
    token = _alias.set(reporting_alias())
    try:
        yield _alias.get() or DEFAULT_DB_ALIAS
    finally:
        _alias.reset(token)


def reporting_view(view: Callable[..., Any]) -> Callable[..., Any]:
    """A view whose reads (including its template's) come from the reporting database. The session and
    the user were read by the middleware before the view, from the primary."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with reporting_reads():
            return view(*args, **kwargs)

    return wrapped


def reporting_stream(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """A streamed body read from the reporting database: the server iterates it after the view has
    returned, so each step (and the close of an abandoned download) enters the context itself; the
    context never stays set between steps, where other code of the same thread may run."""
    try:
        while True:
            with reporting_reads():
                try:
                    chunk = next(chunks)
                except StopIteration:
                    return
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            with reporting_reads():
                close()


class ReplicaRouter:
    """Reads inside a reporting context go to its alias; every write and migration to the primary."""

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return _alias.get()

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True  # the replica holds the same rows as the primary

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == DEFAULT_DB_ALIAS  # a replica is read-only: it replays the primary's schema
