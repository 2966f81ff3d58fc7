import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dashboard.summary import registry_summary
from outcomes.cohort import FILTER_KEYS, CohortFilterForm
from registry.replica import reporting_reads


class Command(BaseCommand):
    help = (
        "The registry summary (VAS, ODI, opioids, survival; shared/crf/summary.md), study-wide, with optional filters."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print the summary as JSON")
        parser.add_argument("--site", help="site code")
        parser.add_argument("--approach", help="approach of the index procedure, e.g. interpedicular")
        parser.add_argument("--primary-tumour", dest="primary_tumour", help="e.g. lung")
        parser.add_argument("--procedure-from", dest="procedure_from", help="index procedure on or after, YYYY-MM-DD")
        parser.add_argument("--procedure-to", dest="procedure_to", help="index procedure on or before, YYYY-MM-DD")

    def handle(self, *args: Any, **options: Any) -> None:
        form = CohortFilterForm({k: options[k] for k in FILTER_KEYS if options.get(k)}, user=None)
        if not form.is_valid():
            problems = "; ".join(f"{field}: {' '.join(errors)}" for field, errors in form.errors.items())
            raise CommandError(f"Invalid filters: {problems}")
        with reporting_reads():  # the replica, if configured (registry/replica.py)
            summary = registry_summary(None, form.as_filters())
        if options["json"]:
            self.stdout.write(json.dumps(summary, indent=2, ensure_ascii=False))
            return
        self.stdout.write(_text(summary))


def _text(summary: dict[str, Any]) -> str:
    cohort = summary["cohort"]
    lines = [
        f"{cohort['patients']} patients, {cohort['procedures']} procedures (filters: {summary['filters'] or 'none'}); "
        f"not analysed: {cohort['awaiting_consent']} awaiting consent, {cohort['excluded_withdrawn']} removed"
    ]
    for measure, label in (("vas", "VAS"), ("odi", "ODI"), ("opioid_count", "Opioids")):
        for timepoint, block in summary["outcomes"][measure].items():
            if block["n"] >= 2:
                b, f = block["baseline"], block["followup"]
                lines.append(
                    f"{label} {timepoint}: n={block['n']} {b['mean']:.2f} ± {b['sd']:.2f} -> "
                    f"{f['mean']:.2f} ± {f['sd']:.2f}, p (t test) = {block['p_ttest']}"
                )
    survival = summary["survival"]
    at = ", ".join(
        f"{key} {'n/a' if block['survival'] is None else format(block['survival'], '.3f')} (at risk {block['at_risk']})"
        for key, block in survival["at"].items()
    )
    median = "not reached" if survival["median_days"] is None else f"{survival['median_days']:.0f} days"
    lines.append(f"Survival: n={survival['n']}, {survival['deaths']} deaths; {at}; median {median}")
    return "\n".join(lines)
