"""The nurse's pages (patient, procedure, visit) in both languages, and the small things a nurse notices:
ODI statements on the form, neutral band names, plural forms, labels for codes, required marks."""

import datetime
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import translation
from django.utils.html import escape

from outcomes import odi
from outcomes.views import PLACEHOLDER_NOTICE
from patients.services import withdraw_consent
from procedures.models import Procedure
from tests.factories import ConsentFactory, FollowUpFactory, PatientFactory, ProcedureFactory

pytestmark = pytest.mark.django_db
TODAY = datetime.date.today()
SHIPPED = Path(__file__).resolve().parents[2] / "outcomes" / "odi_text"


@pytest.fixture(autouse=True)
def _english_afterwards():
    """A request in Chinese leaves Chinese active in this thread (LocaleMiddleware never resets it):
    the tests that follow must start in English, as a fresh request would."""
    yield
    translation.activate("en")


@pytest.fixture
def patient(site):
    patient = PatientFactory(site=site, enrolment_date=TODAY - datetime.timedelta(days=20))
    ConsentFactory(patient=patient)
    procedure_day = TODAY - datetime.timedelta(days=10)
    ProcedureFactory(
        patient=patient,
        procedure_date=procedure_day,
        admission_date=procedure_day,
        discharge_date=procedure_day + datetime.timedelta(days=1),  # a one-day stay
        levels_treated="S1|S2",
    )
    return patient


def page(client, url: str, language: str = "en") -> str:
    return client.get(url, HTTP_ACCEPT_LANGUAGE=language).content.decode()


def visible_text(html: str) -> str:
    """The page's text without tags, scripts and JSON data, whitespace collapsed."""
    html = re.sub(r"<(script|style|template)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_patient_page_says_one_day_and_names_the_levels(client, nurse, patient):
    client.force_login(nurse)
    text = visible_text(page(client, reverse("patients:detail", args=[patient.study_id])))
    assert "stay 1 day" in text and "stay 1 days" not in text
    assert "S1–S2" in text and "S1|S2" not in text
    assert "Interpedicular" in text and "interpedicular" not in text


@pytest.mark.parametrize(
    ("codes", "shown"),
    [
        ("S1|S2", "S1–S2"),  # adjacent levels read as a range
        ("L5|S2|S3|coccyx", "L5, S2–S3, Coccyx"),  # S4 and S5 between S3 and the coccyx: not a run
        ("S3", "S3"),
        ("L5|S1|S2|S3|S4|S5|coccyx", "L5–Coccyx"),
    ],
)
def test_levels_read_as_runs_of_level_names(codes, shown):
    assert Procedure(levels_treated=codes).levels_display() == shown


def test_the_patient_page_in_chinese(client, nurse, patient):
    client.force_login(nurse)
    text = visible_text(page(client, reverse("patients:detail", args=[patient.study_id]), "zh-hans"))
    for chinese in ("随访", "手术", "住院 1 天", "经椎弓根间入路", "知情同意有效：可以录入临床数据。", "修改历史"):
        assert chinese in text
    for english in (
        "Follow-up visits",
        "Change history",
        "Valid consent",
        "stay 1",
        "Interpedicular",
        "Record another procedure",
        "technical success",
        "anaesthesia",
    ):
        assert english not in text


def test_a_withdrawal_reads_as_its_label_not_its_code(client, nurse, patient):
    withdraw_consent(consent=patient.consents.get(), scope="remove_data", reason="asked", user=nurse)
    client.force_login(nurse)
    url = reverse("patients:detail", args=[patient.study_id])
    consent = consent_section(page(client, url))
    assert "Withdrawn: Remove data" in consent and "remove_data" not in consent
    assert "已撤回：删除数据" in consent_section(page(client, url, "zh-hans"))


def consent_section(html: str) -> str:
    return visible_text(re.search(r'<section[^>]*aria-labelledby="h-consent".*?</section>', html, re.S).group(0))


def shipped(language: str) -> dict:
    return json.loads((SHIPPED / f"{language}.json").read_text(encoding="utf-8"))


def test_the_visit_form_shows_each_score_with_its_statement_and_says_it_is_a_placeholder(client, nurse, patient):
    client.force_login(nurse)
    html = page(client, reverse("outcomes:visit", args=[patient.study_id, "post"]))
    text = shipped("en")
    walking = text["sections"][3]["statements"]  # section 4, read from the shipped file itself
    for score, statement in enumerate(walking):
        assert f"{score} – {statement}" in html
    assert escape(str(PLACEHOLDER_NOTICE)) in html  # the page says the wording is not the licensed ODI


def test_the_visit_form_shows_the_installed_licensed_text(client, nurse, patient, tmp_path):
    sections = [{"title": f"Title {n}", "statements": [f"Licensed {n}.{s}" for s in range(6)]} for n in range(1, 11)]
    path = tmp_path / "odi.json"
    path.write_text(json.dumps({"sections": sections}), encoding="utf-8")
    odi.install(path, "en")
    client.force_login(nurse)
    html = page(client, reverse("outcomes:visit", args=[patient.study_id, "post"]))
    assert "5 – Licensed 4.5" in html
    assert escape(str(PLACEHOLDER_NOTICE)) not in html and shipped("en")["sections"][3]["statements"][2] not in html


def test_the_visit_form_in_chinese(client, nurse, patient):
    client.force_login(nurse)
    html = page(client, reverse("outcomes:visit", args=[patient.study_id, "post"]), "zh-hans")
    text = visible_text(html)
    assert "疼痛视觉模拟评分（0-10）" in text  # the VAS field's label
    assert f"2 – {shipped('zh-hans')['sections'][0]['statements'][2]}" in text
    assert "记录术后随访" in text and "保存随访" in text
    for english in ("Record the", "Save visit", "Pain, visual analogue scale", "Not answered", "Opioids prescribed"):
        assert english not in text
    # the sentences visit.js writes come translated from the page
    strings = json.loads(re.search(r'id="visit-strings"[^>]*>(.*?)</script>', html, re.S).group(1))
    assert strings["bands"]["crippled"] == "极重度功能障碍"
    assert "%(answered)s" in strings["odi_unscored"] and "未计分" in strings["odi_unscored"]


def test_a_saved_score_shows_a_neutral_band_name(client, nurse, patient):
    # 7 sections at 4 and 3 at 3: 37 of 50 = 74 %, in the band 61-80 (domain.md: "crippled")
    answers = {f"odi_q{n}": 4 if n <= 7 else 3 for n in range(1, 11)}
    FollowUpFactory(patient=patient, timepoint="post", visit_date=TODAY - datetime.timedelta(days=9), **answers)
    client.force_login(nurse)
    detail = reverse("patients:detail", args=[patient.study_id])
    html = page(client, reverse("outcomes:visit", args=[patient.study_id, "post"]))
    assert "(very severe disability)" in html
    assert "crippled disability" not in html and "bed-bound" not in visible_text(html)
    assert "极重度功能障碍" in page(client, reverse("outcomes:visit", args=[patient.study_id, "post"]), "zh-hans")
    row = re.search(r"<tr>\s*<th scope=\"row\">Post-procedure</th>.*?</tr>", page(client, detail), re.S).group(0)
    assert "very severe disability" in row  # the patient page names the band too


def test_the_mme_reason_names_the_drug_and_route_in_chinese(client, nurse, patient):
    from outcomes.models import Medication
    from outcomes.services import record_visit

    visit = FollowUpFactory.build(patient=patient, timepoint="post", visit_date=TODAY - datetime.timedelta(days=9))
    record_visit(visit=visit, medications=[Medication(drug="morphine", daily_dose=Decimal(10), route="iv")], user=nurse)
    client.force_login(nurse)
    text = visible_text(page(client, reverse("outcomes:visit", args=[patient.study_id, "post"]), "zh-hans"))
    assert "未知（吗啡，静脉（包括 PCA）：CDC 换算系数仅适用于口服剂量）" in text


def test_blank_formset_rows_carry_no_required_marks_but_a_saved_row_does(client, nurse, patient):
    from tests.factories import LeakageFactory

    procedure = patient.procedures.get()
    client.force_login(nurse)
    html = page(client, reverse("procedures:edit", args=[procedure.pk]))
    rows = re.findall(r'<div class="row g-2 align-items-start border-bottom mb-2 formset-row([^"]*)" data-row>', html)
    assert rows and all(r == " formset-row-blank" for r in rows)  # no saved leakage or complication yet
    LeakageFactory(procedure=procedure)
    html = page(client, reverse("procedures:edit", args=[procedure.pk]))
    rows = re.findall(r'formset-row([^"]*)" data-row>', html)
    assert rows.count("") == 1  # the saved leakage row keeps its marks


def test_the_sacrum_segments_are_named_per_level_in_both_languages(client, nurse, patient):
    client.force_login(nurse)
    url = reverse("procedures:create", args=[patient.study_id])
    names = re.findall(r'data-level="([^"]+)"[^>]*data-name="([^"]+)"', page(client, url))
    assert names == [
        ("L5", "L5 on the picture"),
        ("S1", "S1 on the picture"),
        ("S2", "S2 on the picture"),
        ("S3", "S3 on the picture"),
        ("S4", "S4 on the picture"),
        ("S5", "S5 on the picture"),
        ("coccyx", "Coccyx on the picture"),
    ]
    zh = dict(re.findall(r'data-level="([^"]+)"[^>]*data-name="([^"]+)"', page(client, url, "zh-hans")))
    assert zh["S1"] == "示意图：S1" and zh["coccyx"] == "示意图：尾骨"


def test_rule_messages_are_translated_with_their_values(patient):
    from patients import rules

    visit = FollowUpFactory.build(patient=patient, timepoint="post", visit_date=patient.enrolment_date)
    with translation.override("zh-hans"):
        [problem] = [p for p in rules.case_problems(patient, procedures=patient.procedures.all(), visits=[visit])]
    index = patient.procedures.get().procedure_date.isoformat()
    assert problem.message == f"术后随访（{patient.enrolment_date.isoformat()}）早于首次手术（{index}）。"


def test_the_trail_names_records_in_english_whoever_saves(nurse, patient):
    from audit.models import AuditEvent
    from outcomes.models import FollowUp, Medication
    from outcomes.services import record_visit

    visit = FollowUp(patient=patient, timepoint="post", visit_date=TODAY - datetime.timedelta(days=9), vas=Decimal(5))
    with translation.override("zh-hans"):  # a nurse working in Chinese
        record_visit(visit=visit, medications=[Medication(drug="morphine", daily_dose=Decimal(10))], user=nurse)
    names = set(AuditEvent.objects.values_list("object_repr", flat=True))
    assert f"{patient.study_id} Post-procedure" in names
    assert any(name.startswith("Morphine ") for name in names)
    assert not any(re.search(r"[\u4e00-\u9fff]", name) for name in names)
