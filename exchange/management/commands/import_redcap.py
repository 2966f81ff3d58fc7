import tempfile
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from exchange.formats import redcap_to_bundle


class Command(BaseCommand):
    help = (
        "Import REDCap records (flat layout, as export_interchange writes them) through import_bundle: "
        "the records become the bundle's files, then the same all-or-nothing checks and writes apply."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dictionary", type=Path, help="REDCap data dictionary (redcap/data_dictionary.csv)")
        parser.add_argument("records", type=Path, help="REDCap records, flat layout (redcap/records.csv)")

    def handle(self, *args: Any, dictionary: Path, records: Path, **options: Any) -> None:
        try:
            files = redcap_to_bundle(dictionary.read_bytes(), records.read_bytes())
        except (OSError, KeyError, ValueError, UnicodeDecodeError) as exc:
            raise CommandError(f"REDCap files not readable: {exc}") from exc
        with tempfile.TemporaryDirectory() as folder:
            for name, content in files.items():
                (Path(folder) / name).write_bytes(content)
            self.stdout.write(f"REDCap records as bundle files: {', '.join(sorted(files))}")
            call_command("import_bundle", folder, stdout=self.stdout, stderr=self.stderr)
