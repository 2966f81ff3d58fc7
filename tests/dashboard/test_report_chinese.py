"""The report in Chinese: the PDF embeds a CJK font (pdffonts) and its text (pdftotext) holds the
Chinese headings, not the English ones; the CSV tables stay English files whatever the language;
the dashboard page reads Chinese too."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.utils import translation

pytestmark = pytest.mark.skipif(
    not (shutil.which("pdftotext") and shutil.which("pdffonts")), reason="poppler-utils is not installed"
)
ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}


@pytest.fixture(autouse=True)
def _english_afterwards():
    yield
    translation.deactivate()  # a request leaves its language active in this thread; the next test starts in English


def poppler(tool: str, pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    args = [tool, "-layout", str(path), "-"] if tool == "pdftotext" else [tool, str(path)]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def test_the_pdf_report_in_chinese_embeds_a_cjk_font_and_holds_the_chinese_headings(
    demo_cohort, investigator, client, tmp_path
):
    client.force_login(investigator)
    response = client.get("/dashboard/report.pdf", **ZH)
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"

    # pdffonts: name, type, encoding, emb, sub, uni, object ID; one line per font after the two header lines
    fonts = poppler("pdffonts", response.content, tmp_path).splitlines()[2:]
    cjk = [line for line in fonts if "CJK" in line.split()[0]]
    assert cjk, fonts
    assert all(line.split()[-5] == "yes" for line in cjk), cjk  # embedded, so any reader shows the glyphs

    text = " ".join(poppler("pdftotext", response.content, tmp_path).split())
    for heading in (
        "表 1. 基线及手术特征",
        "结局：随访与基线比较",
        "应答者",
        "阿片类药物变化",
        "首次手术后的总生存",
        "方法",
    ):
        assert heading in text, heading
    assert "我们分析了经皮骶骨成形术登记研究中的 10 例患者" in text
    for english in ("Table 1. Baseline", "Overall survival", "Responders", "Methods", "We analysed"):
        assert english not in text, english


def test_the_report_tables_download_with_english_labels_in_any_language(demo_cohort, investigator, client):
    client.force_login(investigator)
    english = client.get("/dashboard/report/table/leakage.csv").content.decode()
    chinese = client.get("/dashboard/report/table/leakage.csv", **ZH).content.decode()
    assert chinese == english
    assert english.splitlines()[0] == "leakage,patients,of"


def test_the_dashboard_reads_chinese_from_the_filters_to_the_charts_words(demo_cohort, investigator, client):
    client.force_login(investigator)
    page = client.get("/dashboard/", **ZH).content.decode()
    for chinese in (
        "数据看板",
        "应用筛选",
        "全部入路",
        "首次手术日期自",  # the cohort filter (outcomes/cohort.py)
        "表 1. 基线及手术特征",
        "首次手术后的总生存",
    ):
        assert chinese in page, chinese
    for english in ("Apply filters", "All approaches", "Index procedure from", "Table 1. Baseline", "Key results"):
        assert english not in page, english
    words = json.loads(re.search(r'<script id="dashboard-text" type="application/json">(.*?)</script>', page, re.S)[1])
    assert words["mean"] == "均值" and words["post"] == "术后"  # the charts' legend and axes, handed to dashboard.js
