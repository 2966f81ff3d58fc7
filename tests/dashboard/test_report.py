"""The publication report: the PDF's text (pdftotext) holds the source study's
figures as printed, its footer hash is the analysed data's, recomputed here from
the documented definition; one click from the dashboard, one command, and the
figures and tables download on their own."""

import csv
import hashlib
import io
import json
import math
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from dashboard.selectors import cohort_columns

EXPECTED = json.loads((Path(__file__).parent / "paper_expected.json").read_text())
SVG = "{http://www.w3.org/2000/svg}"
pytestmark = pytest.mark.skipif(not shutil.which("pdftotext"), reason="poppler-utils (pdftotext) is not installed")


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True)
    return " ".join(out.stdout.split())  # one line, single spaces: table cells wrap anywhere


def independent_hash(user=None, filters=None) -> str:
    """The documented definition (dashboard/report.py), written again: rows of the cohort's
    columns as {name: value} with NaN as null, each serialised canonically, sorted, joined as a JSON list."""
    cohort = cohort_columns(user, filters or {})
    texts = []
    for record in cohort.columns.tolist():
        row = {}
        for name, value in zip(cohort.columns.dtype.names, record, strict=True):
            row[name] = None if isinstance(value, float) and math.isnan(value) else value
        texts.append(json.dumps(row, sort_keys=True, separators=(",", ":")))
    return hashlib.sha256(("[" + ",".join(sorted(texts)) + "]").encode()).hexdigest()


def printed(value: float, decimals: int) -> str:
    """Rounded half-up as the paper prints it."""
    from decimal import ROUND_HALF_UP, Decimal

    return str(Decimal(repr(value)).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP))


def paper_figures() -> list[str]:
    """The source study's figures as the report prints them, from the expected summary."""
    t1, out = EXPECTED["table1"], EXPECTED["outcomes"]
    vas, odi, op = out["vas"]["post"], out["odi"]["post"], out["opioid_count"]["post"]
    resp, change = EXPECTED["responders"]["post"], EXPECTED["opioid_change"]["post"]

    def ms(block, d):
        return f"{printed(block['mean'], d)} ± {printed(block['sd'], d)}"

    def rng(block, d=0):
        return f"({printed(block['min'], d)}-{printed(block['max'], d)})"

    return [
        f"{ms(t1['age'], 1)} {rng(t1['age'])}",  # 56.3 ± 13.8
        f"Sex: male {t1['sex']['M']}/10 (60%)",
        f"{ms(t1['operation_time_min'], 1)} {rng(t1['operation_time_min'])}",  # 48.5 ± 3.0 (45-55)
        f"{ms(t1['cement_volume_ml'], 2)} {rng(t1['cement_volume_ml'], 1)}",  # 7.80 ± 2.44
        f"{ms(t1['hospital_stay_days'], 1)} {rng(t1['hospital_stay_days'])}",  # 4.7 ± 1.7 (2-7)
        f"{ms(t1['imaging_to_procedure_days'], 1)} {rng(t1['imaging_to_procedure_days'])}",  # 4.0 ± 3.6 (1-13)
        ms(t1["symptoms_to_procedure_months"], 2),  # 1.70 ± 2.23
        f"Lesions treated {t1['lesions_total']}",  # 21
        f"Technical success {t1['technical_success']['n']}/10 (100%)",
        f"{ms(vas['baseline'], 2)} ",  # 6.90 ± 1.20
        f"{ms(vas['followup'], 2)} ",  # 2.70 ± 1.34
        ms(odi["baseline"], 2),  # 74.40 ± 5.48
        ms(odi["followup"], 2),  # 29.60 ± 14.57
        f"{printed(op['baseline']['median'], 0)} [{printed(op['baseline']['q1'], 0)}-3]",  # 2 [1-3] (3.25 prints 3)
        f"{printed(op['followup']['median'], 0)} [{printed(op['followup']['q1'], 0)}-{printed(op['followup']['q3'], 0)}]",
        f"{resp['vas_drop_ge_3']}/{resp['vas_of']} (90%)",  # pain relief 9/10
        f"{change['stopped']}/10 (40%) {change['decreased']}/10 (50%) {change['unchanged']}/10 (10%)",
        f"Any leakage {t1['leakage']['patients']}/10 (30%)",
        f"Presacral soft tissue {t1['leakage']['by_site']['presacral']}/10 (30%)",
        "< 0.001",  # the paper's p < 0.01, at three decimals
        "We analysed 10 patients",
    ]


def test_the_pdf_report_holds_the_papers_figures_and_the_hash_of_the_analysed_data(demo_cohort, tmp_path):
    pdf, html = tmp_path / "r.pdf", tmp_path / "r.html"
    out = StringIO()
    call_command("registry_report", "--pdf", str(pdf), "--html", str(html), stdout=out)
    assert pdf.read_bytes().startswith(b"%PDF")
    text = pdf_text(pdf.read_bytes(), tmp_path)
    missing = [figure for figure in paper_figures() if figure not in text]
    assert not missing, (missing, text[:3000])
    for heading in (
        "Table 1",
        "Outcomes",
        "Responders",
        "Opioid change",
        "Cement leakage",
        "Overall survival",
        "Methods",
    ):
        assert heading in text
    assert "not reached" in text and "10 patients with an index procedure: 0 deaths, 10 censored" in text
    digest = independent_hash()
    assert f"Analysed data SHA-256 {digest}" in text
    assert digest in html.read_text() and digest in out.getvalue()
    assert "Registry version 0.1.0" in text and "Filters all sites" in text
    assert re.search(r"Data read at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", text)


def test_the_hash_follows_the_data_and_not_the_run(demo_cohort, investigator, client, tmp_path):
    client.force_login(investigator)
    first = client.get("/dashboard/report/").content.decode()
    again = client.get("/dashboard/report/").content.decode()
    lung = client.get("/dashboard/report/", {"primary_tumour": "lung"}).content.decode()

    def footer_hash(page):
        return re.search(r'id="data-sha256">([0-9a-f]{64})<', page)[1]

    assert footer_hash(first) == footer_hash(again) == independent_hash(investigator)
    assert footer_hash(lung) == independent_hash(investigator, {"primary_tumour": "lung"}) != footer_hash(first)
    assert "primary tumour lung" in lung and "We analysed 4 patients" in lung


def test_one_click_from_the_dashboard_gives_the_pdf_of_the_current_filters(demo_cohort, investigator, client, tmp_path):
    client.force_login(investigator)
    page = client.get("/dashboard/", {"primary_tumour": "lung"}).content.decode()
    href = re.search(r'id="report-link" href="([^"]+)"', page)[1].replace("&amp;", "&")
    assert href == "/dashboard/report.pdf?primary_tumour=lung"
    response = client.get(href)
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    text = pdf_text(response.content, tmp_path)
    assert "We analysed 4 patients" in text and "primary tumour lung" in text
    assert independent_hash(investigator, {"primary_tumour": "lung"}) in text


def test_figures_download_as_svg_with_one_line_per_patient(demo_cohort, investigator, client):
    client.force_login(investigator)
    for name in ("vas", "odi", "opioids"):
        response = client.get(f"/dashboard/report/figure/{name}.svg")
        assert response.status_code == 200 and response["Content-Type"].startswith("image/svg+xml")
        svg = ET.fromstring(response.content)
        patients = svg.find(f".//{SVG}g[@class='patients']")
        assert len(patients.findall(f"{SVG}line")) == 10  # ten patients, before -> after
        means = [t.text for t in svg.iter(f"{SVG}text") if t.get("font-weight") == "bold"][1:]
        expected = EXPECTED["outcomes"][{"vas": "vas", "odi": "odi", "opioids": "opioid_count"}[name]]["post"]
        assert means == [f"{expected['baseline']['mean']:.2f}", f"{expected['followup']['mean']:.2f}"]
    km = ET.fromstring(client.get("/dashboard/report/figure/survival.svg").content)
    assert km.find(f".//{SVG}path[@class='km']") is not None
    # every patient censored; one tick per distinct censoring day
    assert len(km.findall(f".//{SVG}line[@class='censor']")) >= 1
    assert client.get("/dashboard/report/figure/nothing.svg").status_code == 404


def test_tables_download_as_csv_with_full_precision(demo_cohort, investigator, client):
    client.force_login(investigator)
    response = client.get("/dashboard/report/table/outcomes.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = {(r["measure"], r["timepoint"]): r for r in csv.DictReader(io.StringIO(response.content.decode()))}
    vas = rows[("vas", "post")]
    assert vas["n"] == "10" and float(vas["baseline_mean"]) == pytest.approx(6.9)
    assert float(vas["followup_sd"]) == pytest.approx(EXPECTED["outcomes"]["vas"]["post"]["followup"]["sd"])
    table1 = list(csv.reader(io.StringIO(client.get("/dashboard/report/table/table1.csv").content.decode())))
    assert ["age", "10", "56.3"] == table1[1][:3]
    assert client.get("/dashboard/report/table/nothing.csv").status_code == 404


def test_bad_filters_are_a_400_naming_the_field_and_anonymous_users_log_in(demo_cohort, investigator, client):
    assert client.get("/dashboard/report.pdf").status_code == 302
    client.force_login(investigator)
    response = client.get("/dashboard/report.pdf", {"approach": "sideways"})
    assert response.status_code == 400 and "approach" in response.content.decode()


def test_the_command_refuses_bad_filters_and_no_output(demo_cohort, tmp_path):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--pdf"):
        call_command("registry_report")
    with pytest.raises(CommandError, match="approach"):
        call_command("registry_report", "--html", str(tmp_path / "x.html"), "--approach", "sideways")
