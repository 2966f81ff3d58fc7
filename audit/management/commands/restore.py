"""manage.py restore DIR: restore a `manage.py backup` into an empty database and MEDIA_ROOT.

Every file's SHA-256 is checked against manifest.json before anything is
written. The database named by DATABASE_URL must be empty (no tables). Run the
command as the owner role. pg_restore runs with --no-owner and
--no-privileges, in one transaction, so the restoring role owns everything.
Afterwards give the application's role its rights (`--app-role ROLE`, or
`manage.py grant_app_role ROLE`) and check the trail with `manage.py
verify_trail`. The dump creates the triggers after its data, so the restored
trail keeps its original hashes and is not chained again.
"""

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from audit.backup import DUMP, MANIFEST, MEDIA, pg_env, sha256


class Command(BaseCommand):
    help = "Restore a backup directory (manage.py backup) into an empty PostgreSQL database and MEDIA_ROOT."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("directory")
        parser.add_argument("--app-role", help="run grant_app_role for this role afterwards")

    def handle(self, *args: Any, directory: str, app_role: str | None, **options: Any) -> None:
        source = Path(directory)
        try:
            manifest = json.loads((source / MANIFEST).read_text())
            hashes: dict[str, str] = manifest["sha256"]
        except (OSError, ValueError, KeyError) as e:
            raise CommandError(f"{source} holds no readable {MANIFEST}: {e}") from e
        present = {p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()} - {MANIFEST}
        if present != set(hashes):
            raise CommandError(f"files and manifest differ: {sorted(present ^ set(hashes))}")
        for name, expected in hashes.items():
            if sha256(source / name) != expected:
                raise CommandError(f"{name} does not match its SHA-256 in the manifest; the backup is damaged")
        env = pg_env()
        with connection.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'S')"
            )
            if cur.fetchone()[0]:
                raise CommandError(
                    f"database {connection.settings_dict['NAME']} is not empty; restore into a new, empty database"
                )
        media_root = Path(settings.MEDIA_ROOT)
        documents = sorted(n for n in hashes if n.startswith(MEDIA + "/"))
        for name in documents:
            target = media_root / name.removeprefix(MEDIA + "/")
            if target.exists() and sha256(target) != hashes[name]:
                raise CommandError(f"{target} exists with other content; restore into an empty MEDIA_ROOT")
        connection.close()  # pg_restore works in its own session
        restored = subprocess.run(
            [
                "pg_restore",
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--single-transaction",
                f"--dbname={env['PGDATABASE']}",
                str(source / DUMP),
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        if restored.returncode != 0:
            raise CommandError(f"pg_restore failed (nothing restored): {restored.stderr.strip()}")
        for name in documents:
            target = media_root / name.removeprefix(MEDIA + "/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, target)
            if sha256(target) != hashes[name]:
                raise CommandError(f"{target} was not copied intact")
        if app_role:
            call_command("grant_app_role", app_role, stdout=self.stdout)
        self.stdout.write(
            f"Restored {connection.settings_dict['NAME']} and {len(documents)} document(s) from {source}, "
            f"taken at {manifest.get('taken_at')}. Next: manage.py verify_trail"
            + ("" if app_role else " and manage.py grant_app_role ROLE")
        )
