from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import translation
from django.utils.translation import gettext

from dashboard import report
from outcomes.cohort import FILTER_KEYS, CohortFilterForm
from registry.replica import reporting_reads


def describe(filters: dict[str, Any]) -> str:
    """The filters in words (study-wide: the command sees every site)."""
    parts = [gettext("site %(site)s") % {"site": filters["site"]} if filters.get("site") else gettext("all sites")]
    parts += [f"{key.replace('_', ' ')} {filters[key]}" for key in FILTER_KEYS if key != "site" and filters.get(key)]
    return "; ".join(parts)


class Command(BaseCommand):
    help = "The publication report (HTML and/or PDF) of the registry, study-wide, with optional filters."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--pdf", help="write the PDF report to this file")
        parser.add_argument("--html", help="write the HTML report to this file")
        parser.add_argument("--site", help="site code")
        parser.add_argument("--approach", help="approach of the index procedure, e.g. interpedicular")
        parser.add_argument("--primary-tumour", dest="primary_tumour", help="e.g. lung")
        parser.add_argument("--procedure-from", dest="procedure_from", help="index procedure on or after, YYYY-MM-DD")
        parser.add_argument("--procedure-to", dest="procedure_to", help="index procedure on or before, YYYY-MM-DD")
        parser.add_argument(
            "--language",
            choices=[code for code, _name in settings.LANGUAGES],
            default=settings.LANGUAGE_CODE,
            help="the language of the report (default: %(default)s); zh-hans needs a CJK font (fonts-noto-cjk)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["pdf"] and not options["html"]:
            raise CommandError("Give --pdf FILE and/or --html FILE.")
        form = CohortFilterForm({k: options[k] for k in FILTER_KEYS if options.get(k)}, user=None)
        if not form.is_valid():
            problems = "; ".join(f"{field}: {' '.join(errors)}" for field, errors in form.errors.items())
            raise CommandError(f"Invalid filters: {problems}")
        filters = form.as_filters()
        with translation.override(options.get("language") or settings.LANGUAGE_CODE):
            with reporting_reads():  # the replica, if configured (registry/replica.py)
                context = report.report_context(None, filters, describe(filters))
            html = report.render_html(context)
        if options["html"]:
            Path(options["html"]).write_text(html, encoding="utf-8")
            self.stdout.write(f"HTML report: {options['html']}")
        if options["pdf"]:
            Path(options["pdf"]).write_bytes(report.render_pdf(html))
            self.stdout.write(f"PDF report: {options['pdf']}")
        self.stdout.write(f"Analysed data SHA-256: {context['footer']['sha256']}")
