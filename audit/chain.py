"""The audit trail's hash chain, computed again in Python (`manage.py verify_trail`).

On PostgreSQL a trigger (migrations 0003 and 0004) gives each event `seq` = previous + 1
and `hash` = SHA-256 (hex) of its canonical content, encoded as UTF-8. That
content is these parts, in this order, each written as ``<length>:<text>;``
(length in characters):

    "audit-chain-v1", previous event's hash ("" for the first), seq, id,
    at (UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``), user id ("" if none), username,
    action, model, object_pk, object_repr, study_id, site_code,
    changes (PostgreSQL's text of the jsonb), reason, extra (same).

This module does not call the database's function. It reads the stored
columns and computes the hashes itself. The JSON columns are read as
PostgreSQL renders jsonb (``changes::text``), so a number such as 1.50 keeps
its stored spelling. A change to any stored value, a deleted event in the
middle of the chain, or an event added with the trigger disabled breaks the
chain at that event. Deleting the newest events leaves a shorter chain that
is still valid. To catch that, write down the head (seq and hash) that
verify_trail prints and compare it later.
"""

import datetime
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.db import connection

VERSION = "audit-chain-v1"

COLUMNS = (
    "seq, id, at, user_id, username, action, model, object_pk, object_repr,"
    " study_id, site_code, changes::text, reason, extra::text, hash"
)


def canonical(prev: str, row: tuple) -> str:
    """The text that is hashed for one event (`row` in the order of COLUMNS, without the hash)."""
    seq, pk, at, user_id, *texts = row
    at_utc = at.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    parts = [VERSION, prev, str(seq), str(pk), at_utc, "" if user_id is None else str(user_id), *texts]
    return "".join(f"{len(p)}:{p};" for p in parts)


def digest(prev: str, row: tuple) -> str:
    return hashlib.sha256(canonical(prev, row).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Break:
    seq: int | None
    id: int
    problem: str


@dataclass(frozen=True)
class Report:
    checked: int
    head_seq: int | None
    head_hash: str
    broken: Break | None


def rows(batch: int = 5000) -> Iterator[tuple]:
    """Every event in chain order (unchained ones, seq NULL, last), read with a server-side cursor."""
    with connection.chunked_cursor() as cursor:
        cursor.execute(f"SELECT {COLUMNS} FROM audit_auditevent ORDER BY seq NULLS LAST, id")
        while chunk := cursor.fetchmany(batch):
            yield from chunk


def verify(events: Iterable[tuple]) -> Report:
    """Walk the chain; stop at the first event whose place or hash is wrong."""
    prev, expected_seq, checked, head = "", 1, 0, None
    for row in events:
        seq, pk, stored = row[0], row[1], row[-1]
        if seq is None:
            return Report(
                checked, head, prev, Break(None, pk, "has no place in the chain (written with the trigger off)")
            )
        if seq != expected_seq:
            problem = (
                f"follows seq {expected_seq - 1}: event(s) {expected_seq}..{seq - 1} are missing"
                if seq > expected_seq
                else f"repeats seq {seq}"
            )
            return Report(checked, head, prev, Break(seq, pk, problem))
        if digest(prev, row[:-1]) != stored:
            return Report(
                checked, head, prev, Break(seq, pk, "its content or its link to the previous event was changed")
            )
        prev, head, expected_seq, checked = stored, seq, expected_seq + 1, checked + 1
    return Report(checked, head, prev, None)
