"""The import's problem report in the importer's language: `import_bundle --language zh-hans` names each
problem in Chinese (files, rows, columns and values as in the bundle); the default stays English."""

import csv
import shutil
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from patients.models import Patient
from tests.conftest import DEMO_BUNDLE

pytestmark = pytest.mark.django_db


@pytest.fixture
def broken(tmp_path):
    """The demo bundle with one VAS of 11 (the scale ends at 10) and one visit date that is no date."""
    bundle = tmp_path / "bundle"
    shutil.copytree(DEMO_BUNDLE, bundle)
    path = bundle / "followups.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rows[0]["vas"], rows[1]["visit_date"] = "11", "2019-02-30"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return bundle


def report(bundle, *args: str) -> str:
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("import_bundle", str(bundle), *args, stdout=StringIO(), stderr=err)
    return err.getvalue()


def test_the_problem_report_reads_chinese_when_asked_and_english_otherwise(broken):
    chinese = report(broken, "--language", "zh-hans")
    assert "数据包被拒绝；未导入任何内容。2 个问题：" in chinese
    assert "followups.csv，第 2 行，vas = '11'：高于最大值 10" in chinese
    assert "followups.csv，第 3 行，visit_date = '2019-02-30'：不是真实的日历日期" in chinese
    english = report(broken)
    assert "The bundle was refused; nothing was imported. 2 problems:" in english
    assert "followups.csv, row 2, vas = '11': above the maximum 10" in english
    assert not Patient.objects.exists()
