from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from exchange.importer import BundleError, import_bundle


class Command(BaseCommand):
    help = "Import a CSV bundle (folder or zip) all or nothing; any problem writes nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="bundle folder or zip")
        parser.add_argument(
            "--update",
            action="store_true",
            help="update patients whose study IDs are already in the registry (needs --reason; never deletes rows)",
        )
        parser.add_argument("--reason", default="", help="reason for change, kept in the audit trail (with --update)")

    def handle(self, *args: Any, path: Path, update: bool, reason: str, **options: Any) -> None:
        if not path.exists():
            raise CommandError(f"{path}: no such file or folder")
        if update and not reason.strip():
            raise CommandError("--update needs --reason: every change of existing data is audited with its reason")
        try:
            result = import_bundle(path, update_reason=reason if update else "")
        except BundleError as exc:
            self.stderr.write(f"The bundle was refused; nothing was imported. {len(exc.problems)} problem(s):")
            for problem in exc.problems:
                self.stderr.write(f"  {problem}")
            raise CommandError("import refused") from exc
        counts = ", ".join(f"{n} {name}" for name, n in result.counts.items() if n) or "nothing new"
        changed = ", ".join(f"{n} {name}" for name, n in result.updated.items() if n)
        self.stdout.write(
            self.style.SUCCESS(f"Imported {path.name}: {counts}." + (f" Updated: {changed}." if changed else ""))
        )
