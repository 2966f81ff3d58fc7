import datetime
import getpass
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from exchange.exporter import DEIDENTIFIED, IDENTIFIED, SHAPE_BOTH, ExportSpec
from exchange.models import ExportLog
from exchange.services import start_export, whole_year_problems
from outcomes.cohort import CohortFilterForm


class Command(BaseCommand):
    help = "Write the export zip (the same as the web page's) to --out; de-identified unless --identified."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", type=Path, required=True, help="the zip file to write")
        parser.add_argument("--identified", action="store_true", help="names, MRNs and dates (needs --reason)")
        parser.add_argument("--reason", default="", help="why; kept in the export log")
        parser.add_argument("--shape", choices=ExportLog.Shape.values, default=SHAPE_BOTH)
        parser.add_argument(
            "--packages",
            action="store_true",
            help="also the SPSS, Stata and R files of the same CSVs (several times the CSVs' time for a large cohort)",
        )
        parser.add_argument(  # the default since the CSVs come from the export cache; kept for old scripts
            "--no-packages", dest="packages", action="store_false", help="the CSV files only (the default)"
        )
        parser.add_argument("--site")
        parser.add_argument("--approach")
        parser.add_argument("--primary-tumour")
        parser.add_argument("--procedure-from", type=datetime.date.fromisoformat)
        parser.add_argument("--procedure-to", type=datetime.date.fromisoformat)

    def handle(
        self, *args: Any, out: Path, identified: bool, reason: str, shape: str, packages: bool, **options: Any
    ) -> None:
        raw = {k: options.get(k) for k in ("site", "approach", "primary_tumour", "procedure_from", "procedure_to")}
        form = CohortFilterForm({k: v for k, v in raw.items() if v}, user=None)
        if not form.is_valid():
            raise CommandError("; ".join(f"--{k.replace('_', '-')}: {' '.join(v)}" for k, v in form.errors.items()))
        if identified and not reason.strip():
            raise CommandError("--identified needs --reason (it is logged)")
        if not identified:
            problems = whole_year_problems(form.cleaned_data)
            if problems:
                raise CommandError("; ".join(f"--{m.replace('_', '-', 1)}" for m in problems.values()))
        spec = ExportSpec(
            filters=form.as_filters(),
            level=IDENTIFIED if identified else DEIDENTIFIED,
            shape=shape,
            packages=packages,
            reason=reason,
            username=f"command line ({getpass.getuser()})",
        )
        tmp = out.with_name(out.name + ".part")
        with tmp.open("wb") as fh:
            for chunk in start_export(spec, via="command"):
                fh.write(chunk)
        tmp.replace(out)  # never leave a half-written zip under the final name
        self.stdout.write(self.style.SUCCESS(f"Wrote {out} ({spec.level})."))
