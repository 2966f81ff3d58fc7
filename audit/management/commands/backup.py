"""manage.py backup --out DIR: a consistent backup of the database and the consent documents.

DIR receives `database.dump` (pg_dump, custom format), `media/` (every file
that a file field of the database refers to, e.g. signed consents and blank
forms) and `manifest.json` (SHA-256 of every file, row and file counts).

The dump and the list of documents come from one snapshot. A REPEATABLE READ
transaction exports its snapshot and pg_dump reads with --snapshot, so the
documents copied are exactly those the dumped rows name, even while data
entry goes on. Stored documents are never overwritten (their names are
random), so a file named in the snapshot is still the one the snapshot meant.
Restore with `manage.py restore DIR` into an empty database.
"""

import datetime
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, models, transaction

from audit.backup import DUMP, MANIFEST, MEDIA, pg_env, sha256


def _file_columns() -> list[tuple[str, str]]:
    return [
        (m._meta.db_table, f.column)
        for m in apps.get_models()
        for f in m._meta.concrete_fields
        if isinstance(f, models.FileField)
    ]


class Command(BaseCommand):
    help = "Back up the PostgreSQL database (pg_dump) and the consent documents, with a manifest of SHA-256 hashes."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--out", required=True, help="a new or empty directory")

    def handle(self, *args: Any, out: str, **options: Any) -> None:
        target = Path(out)
        if target.exists() and any(target.iterdir()):
            raise CommandError(f"{target} is not empty; back up into a new directory")
        env = pg_env()
        if connection.in_atomic_block:
            raise CommandError("run backup outside a transaction (it opens its own snapshot)")
        target.mkdir(parents=True, exist_ok=True)
        media_root = Path(settings.MEDIA_ROOT)
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur.execute("SELECT pg_export_snapshot(), now()")
            snapshot, taken_at = cur.fetchone()
            dumped = subprocess.run(
                ["pg_dump", "--format=custom", f"--snapshot={snapshot}", f"--file={target / DUMP}"],
                env=env,
                capture_output=True,
                text=True,
            )
            if dumped.returncode != 0:
                raise CommandError(f"pg_dump failed: {dumped.stderr.strip()}")
            names: set[str] = set()
            for table, column in _file_columns():
                q = connection.ops.quote_name
                cur.execute(f"SELECT DISTINCT {q(column)} FROM {q(table)} WHERE {q(column)} <> ''")
                names.update(name for (name,) in cur.fetchall())
            cur.execute(
                "SELECT c.relname, c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = current_schema() AND c.relkind = 'r'"
            )
            tables = sorted(name for name, _ in cur.fetchall())
            counts = {}
            for table in tables:
                cur.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")
                counts[table] = cur.fetchone()[0]
        missing = []
        for name in sorted(names):
            source = (media_root / name).resolve()
            if media_root.resolve() not in source.parents:
                raise CommandError(f"refusing a stored file name outside MEDIA_ROOT: {name!r}")
            if not source.is_file():
                missing.append(name)
                continue
            copy = target / MEDIA / name
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy)
        if missing:
            raise CommandError(
                f"{len(missing)} document(s) named in the database are missing from MEDIA_ROOT: {missing}"
            )
        files = {p.relative_to(target).as_posix(): sha256(p) for p in sorted(target.rglob("*")) if p.is_file()}
        manifest = {
            "format": "sacroplasty-registry-backup-1",
            "taken_at": taken_at.astimezone(datetime.UTC).isoformat(),
            "database": connection.settings_dict["NAME"],
            "registry_version": settings.REGISTRY_VERSION,
            "rows": counts,
            "documents": len(names),
            "sha256": files,
        }
        (target / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        size = sum((target / f).stat().st_size for f in files)
        self.stdout.write(
            f"Backup written to {target}: database ({sum(counts.values())} rows in {len(counts)} tables) "
            f"and {len(names)} document(s), {size / 1024 / 1024:.1f} MB; hashes in {MANIFEST}"
        )
