from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from outcomes import odi


class Command(BaseCommand):
    help = "Install the site's licensed ODI wording (JSON: ten sections, each a title and six statements)."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("file", type=Path)
        parser.add_argument("--language", required=True, choices=odi.LANGUAGES)

    def handle(self, *args, file: Path, language: str, **options):  # type: ignore[no-untyped-def]
        if not file.is_file():
            raise CommandError(f"No such file: {file}")
        try:
            text = odi.install(file, language)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(f"Installed the ODI text for {language} (SHA-256 {text.sha256}).")
