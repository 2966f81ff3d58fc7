"""manage.py verify_trail: recompute the audit trail's hash chain and report the first broken link."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from audit.chain import rows, verify


class Command(BaseCommand):
    help = (
        "Recompute the audit trail's SHA-256 chain (PostgreSQL) in Python and report the first broken link; "
        "exit status 1 if the chain is broken."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("The trail is chained on PostgreSQL only; this database is " + connection.vendor)
        report = verify(rows())
        if report.broken:
            b = report.broken
            where = f"seq {b.seq} (id {b.id})" if b.seq is not None else f"id {b.id}"
            raise CommandError(
                f"Audit trail broken at event {where}: {b.problem}. "
                f"{report.checked} event(s) before it are intact (last good seq {report.head_seq})."
            )
        self.stdout.write(
            f"Audit trail intact: {report.checked} event(s); head seq {report.head_seq} hash {report.head_hash}"
        )
