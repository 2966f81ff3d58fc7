"""The demo cohort reproduces the paper's figures (paper_expected.json, an exact copy of shared/demo's).

The file is the summary.md shape plus two additions, `paper` (each printed
figure of the paper beside the computed one) and `notes`; the summary is
compared with everything else, the survival block included.
"""

import io
import json
import math
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.conftest import SHARED

EXPECTED = Path(__file__).with_name("paper_expected.json")


def assert_same(actual, expected, path="$"):
    if isinstance(expected, dict):
        assert isinstance(actual, dict), path
        assert set(actual) == set(expected), f"{path}: keys {sorted(actual)} != {sorted(expected)}"
        for key in expected:
            assert_same(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{path}[{i}]")
    elif isinstance(expected, float) or isinstance(actual, float):
        assert actual is not None and math.isclose(actual, expected, rel_tol=0, abs_tol=1e-9), (
            f"{path}: {actual} != {expected}"
        )
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def run_command(*args):
    out = io.StringIO()
    call_command("registry_summary", "--json", *args, stdout=out)
    return json.loads(out.getvalue())


ADDITIONS = ("paper", "notes")  # in the file, not in the summary shape


def expected_summary():
    expected = json.loads(EXPECTED.read_text())
    for key in ("generated_at", *ADDITIONS):
        del expected[key]
    return expected


def test_the_command_reproduces_the_paper(demo_cohort):
    summary = run_command()
    assert summary.pop("generated_at").endswith("Z")
    assert_same(summary, expected_summary())


def test_the_json_endpoint_reproduces_the_paper(client, demo_cohort, investigator):
    client.force_login(investigator)
    summary = client.get("/dashboard/summary.json").json()
    del summary["generated_at"]
    assert_same(summary, expected_summary())


def test_the_copy_of_the_expected_figures_is_current():
    shared = SHARED / "demo" / "paper_expected.json"
    if not shared.exists():
        pytest.skip("shared/ is not checked out next to the project")
    assert EXPECTED.read_bytes() == shared.read_bytes()


def test_the_text_summary_states_the_population_and_survival(demo_cohort):
    out = io.StringIO()
    call_command("registry_summary", stdout=out)
    text = out.getvalue()
    assert "10 patients, 10 procedures (filters: none); not analysed: 0 awaiting consent, 0 removed" in text
    assert (
        "Survival: n=10, 0 deaths; m3 n/a (at risk 0), m6 n/a (at risk 0), m12 n/a (at risk 0); median not reached"
        in text
    )
