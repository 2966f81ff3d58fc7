"""The registry's summary against the independent reference, on a cohort of any size (0 differences expected).

The reference is `tests/dashboard/test_reference.py`'s `reference_summary`: model instances read one
patient at a time, exact arithmetic with Decimal and Fraction, scipy only for the distributions; it never
calls `dashboard.stats`, the analysis rows or the cohort queries. The registry's side is
`manage.py registry_summary --json`, which reads the trigger-kept `outcomes.AnalysisRow` table.
The suite runs the same comparison on small cohorts; this runs it on a benchmark database:

    export DJANGO_DEBUG=True DATABASE_URL=postgres://registry:registry@127.0.0.1:5432/registry_bench_100k
    .venv/bin/python bench/compare_summary.py [--filters all|some]

It prints, per filter, the patients analysed, the number of values compared, the time each side took
and the first difference (a path such as `$.outcomes.vas.m3.mean`), or "0 differences".
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "registry.settings")

import django

django.setup()

from django.core.management import call_command  # noqa: E402

from accounts.models import Site  # noqa: E402
from tests.dashboard.test_paper import assert_same  # noqa: E402
from tests.dashboard.test_reference import OPTION, reference_summary  # noqa: E402


def leaves(value: object) -> int:
    """How many numbers and strings a summary holds (what the comparison looked at)."""
    if isinstance(value, dict):
        return sum(leaves(v) for v in value.values())
    if isinstance(value, list):
        return sum(leaves(v) for v in value)
    return 1


def filter_sets(which: str) -> list[dict[str, str]]:
    site = Site.objects.order_by("code").values_list("code", flat=True).first()
    some = [{}, {"site": site}, {"approach": "interpedicular", "procedure_from": "2023-01-01"}]
    if which == "some":
        return some
    return [
        *some,
        {"approach": "short_axis"},
        {"primary_tumour": "lung"},
        {"procedure_from": "2021-06-01", "procedure_to": "2022-12-31"},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--filters", choices=("some", "all"), default="some")
    args = parser.parse_args()
    failures = 0
    for filters in filter_sets(args.filters):
        options = [part for key, value in filters.items() for part in (OPTION[key], value)]
        start = time.perf_counter()
        out = io.StringIO()
        call_command("registry_summary", "--json", *options, stdout=out)
        summary = json.loads(out.getvalue())
        summary.pop("generated_at")
        registry_s = time.perf_counter() - start
        start = time.perf_counter()
        expected = reference_summary(filters)
        reference_s = time.perf_counter() - start
        try:
            assert_same(summary, expected, "$")
            verdict = "0 differences"
        except AssertionError as difference:
            failures += 1
            verdict = f"DIFFERENT: {difference}"
        print(
            f"{json.dumps(filters):70} {summary['cohort']['patients']:>7,} patients  {leaves(expected):>5} values  "
            f"registry {registry_s:6.1f} s  reference {reference_s:7.1f} s  {verdict}",
            flush=True,
        )
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
