import datetime
import json
import zipfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from exchange.formats import interchange_files


class Command(BaseCommand):
    help = (
        "CDISC ODM 1.3.2 (cdisc_odm.xml) and REDCap (redcap/data_dictionary.csv, redcap/records.csv) files "
        "of an export zip written by export_bundle or the export page: the same cells and de-identification."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("zip", type=Path, help="an export zip (long or both shapes)")
        parser.add_argument("--out", type=Path, required=True, help="folder to write the files into")

    def handle(self, *args: Any, zip: Path, out: Path, **options: Any) -> None:
        try:
            data = zip.read_bytes()
            manifest = json.loads(zipfile.ZipFile(zip).read("manifest.json"))
            when = datetime.datetime.fromisoformat(manifest["exported_at"].replace("Z", "+00:00"))
            files = interchange_files(data, when)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise CommandError(f"{zip}: not an export zip with long files ({exc})") from exc
        for name, content in files.items():
            path = out / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            self.stdout.write(f"Wrote {path}")
