from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import User
from exchange.importer import BundleError, Limits, import_bundle


class Command(BaseCommand):
    help = "Import a CSV bundle (folder or zip) all or nothing; any problem writes nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="bundle folder or zip")
        parser.add_argument(
            "--update",
            action="store_true",
            help="update patients whose study IDs are already in the registry, from a corrected identified "
            "export (rows matched by record_id; needs --reason and --user)",
        )
        parser.add_argument(
            "--max-rows",
            type=int,
            default=None,
            help="refuse a bundle file with more data rows than this (default: setting IMPORT_MAX_ROWS, 1,000,000)",
        )
        parser.add_argument("--reason", default="", help="reason for change, kept in the audit trail (with --update)")
        parser.add_argument(
            "--user", default="", help="USERNAME of the registry user making the change (the trail names her)"
        )
        parser.add_argument(
            "--remove-missing",
            action="store_true",
            help="with --update: delete the rows of the bundle's patients that the bundle leaves out "
            "(never a consent); without it they are kept",
        )

    def handle(
        self,
        *args: Any,
        path: Path,
        update: bool,
        reason: str,
        user: str,
        remove_missing: bool,
        max_rows: int | None,
        **options: Any,
    ) -> None:
        if not path.exists():
            raise CommandError(f"{path}: no such file or folder")
        if remove_missing and not update:
            raise CommandError("--remove-missing only goes with --update")
        if update and not reason.strip():
            raise CommandError("--update needs --reason: every change of existing data is audited with its reason")
        if update and not user.strip():
            raise CommandError("--update needs --user USERNAME: every change is recorded with who made it")
        actor = None
        if user.strip():
            actor = User.objects.filter(username=user.strip(), is_active=True).first()
            if actor is None:
                raise CommandError(f"--user {user}: no active registry user has this username")
            if not actor.can_enter_data:
                raise CommandError(f"--user {user}: this user may not enter or correct clinical data")
        try:
            result = import_bundle(
                path,
                user=actor,
                update_reason=reason if update else "",
                remove_missing=remove_missing,
                limits=Limits.from_settings(max_rows=max_rows),
            )
        except BundleError as exc:
            self.stderr.write(f"The bundle was refused; nothing was imported. {exc.total} problem(s):")
            for problem in exc.problems:
                self.stderr.write(f"  {problem}")
            if exc.unlisted:
                self.stderr.write(f"  ... and {exc.unlisted} more problem(s), not listed")
            raise CommandError("import refused") from exc
        counts = ", ".join(f"{n} {name}" for name, n in result.counts.items() if n) or "nothing new"
        changed = ", ".join(f"{n} {name}" for name, n in result.updated.items() if n)
        removed = ", ".join(f"{n} {name}" for name, n in result.removed.items() if n)
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {path.name}: {counts}."
                + (f" Updated: {changed}." if changed else "")
                + (f" Removed: {removed}." if removed else "")
                + f" Audit trail entries written: {result.trail_entries}."
            )
        )
