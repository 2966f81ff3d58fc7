"""Run the data-quality rules (nightly from cron, or the `run_quality_rules` task of the task runner)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts.models import Site
from oversight import quality


class Command(BaseCommand):
    help = "Run the data-quality rules; print hits per site and rule; with --open-queries, open a query per new hit."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--site", action="append", default=[], help="Site code (repeatable; default every site)")
        parser.add_argument("--open-queries", action="store_true", help="Open a query for each hit without one")

    def handle(self, *args: Any, **options: Any) -> None:
        sites = Site.objects.filter(code__in=options["site"]) if options["site"] else Site.objects.all()
        hits = quality.run_rules(sites)
        for row in quality.counts_by_site(hits):
            counts = ", ".join(f"{rule}={n}" for rule, n in zip(quality.RULES, row["rules"], strict=True) if n)
            self.stdout.write(f"{row['site']}: {row['total']} hit(s) {counts}")
        self.stdout.write(f"total: {len(hits)}")
        if options["open_queries"]:
            self.stdout.write(f"queries opened: {quality.open_queries(hits)}")
