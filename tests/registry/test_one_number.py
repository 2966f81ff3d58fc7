"""One way to show a number (registry.measures): the rule by hand-worked values, and one
visit's ODI read the same on every page a user would check it on."""

import datetime
import re
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import translation

from outcomes.models import FollowUp, Medication
from outcomes.services import record_visit
from registry import measures
from tests.factories import ConsentFactory, PatientFactory, ProcedureFactory

pytestmark = pytest.mark.django_db
TODAY = datetime.date.today()
PROCEDURE_DAY = TODAY - datetime.timedelta(days=2)


# --- the rule -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "measure", "shown"),
    [
        (Decimal("7.0"), "vas", "7"),  # entered as 7: the column's padding zero is not shown
        (Decimal("7.5"), "vas", "7.5"),
        ("8.0", "vas", "8"),  # as the trail stores it
        (3.5000000000001, "vas", "3.5"),  # float noise of a computed VAS goes at the field's one decimal
        (Decimal("60.000"), "daily_dose", "60"),
        (Decimal("12.500"), "daily_dose", "12.5"),
        (Decimal("100.000"), "daily_dose", "100"),  # not 1E+2
        (Decimal("6.0"), "cement_volume_ml", "6"),
        (35 / 45 * 100, "odi_score", "77.78"),  # derived: two decimals, as its statistics
        (40.0, "odi_score", "40.00"),
        (47.25, "mme_per_day", "47.3"),  # rounded half up
        (2, "opioid_count", "2"),
        (None, "vas", ""),
    ],
)
def test_a_records_value_reads_at_its_entered_precision(value, measure, shown):
    assert measures.record(value, measure) == shown


@pytest.mark.parametrize(
    ("value", "measure", "shown"),
    [
        (6.9, "vas", "6.90"),
        (1.19722, "vas", "1.20"),
        (77.77777777777777, "odi", "77.78"),
        (2.675, "odi", "2.68"),  # half up, as a reader rounds (the float is 2.67499…)
        (-0.001, "vas", "0.00"),  # never "-0.00"
        (None, "vas", "–"),
        (45.04, "mme_per_day", "45.0"),
    ],
)
def test_a_statistic_reads_at_the_source_studys_decimals(value, measure, shown):
    assert measures.statistic(value, measure) == shown


def test_numbers_follow_the_active_language():
    # Both languages write a decimal point; the point is that the page's language formats, not Python.
    with translation.override("zh-hans"):
        assert measures.record(Decimal("7.5"), "vas") == "7.5"
        assert measures.statistic(6.9, "vas") == "6.90"


# --- one visit's ODI on every page ------------------------------------------------------

# Sections 1-8 answered 4, section 9 answered 3, section 10 not answered: 35 of 45 -> 77.777...%
BASELINE_ODI = [4, 4, 4, 4, 4, 4, 4, 4, 3, None]


@pytest.fixture
def case(site, nurse):
    patient = PatientFactory(site=site, enrolment_date=TODAY - datetime.timedelta(days=10))
    ConsentFactory(patient=patient)
    ProcedureFactory(patient=patient, procedure_date=PROCEDURE_DAY)
    baseline = FollowUp(
        patient=patient, timepoint="baseline", visit_date=PROCEDURE_DAY - datetime.timedelta(days=1), vas=Decimal("7")
    )
    for n, answer in enumerate(BASELINE_ODI, start=1):
        setattr(baseline, f"odi_q{n}", answer)
    record_visit(visit=baseline, medications=[Medication(drug="morphine", daily_dose=Decimal("60"))], user=nurse)
    post = FollowUp(patient=patient, timepoint="post", visit_date=TODAY, vas=Decimal("3.5"))
    for n in range(1, 11):
        setattr(post, f"odi_q{n}", 2)  # 20 of 50 -> 40%
    record_visit(visit=post, user=nurse)
    return patient


def _visible(html: str) -> str:
    """The page as read: scripts (the charts' data) and tags left out."""
    html = re.sub(r"<script.*?</script>", " ", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


def _odi_readings(text: str) -> set[str]:
    return set(re.findall(r"77[.,]\d+", text))


def test_one_visits_odi_reads_the_same_on_every_page(client, case, nurse, investigator, admin_user):
    assert FollowUp.objects.get(timepoint="baseline").odi_score == pytest.approx(35 / 45 * 100)
    sid = case.study_id
    pages = {}
    client.force_login(nurse)
    pages["visit form"] = client.get(reverse("outcomes:visit", args=[sid, "baseline"]))
    pages["patient page"] = client.get(reverse("patients:detail", args=[sid]))
    client.force_login(investigator)
    pages["dashboard"] = client.get(reverse("dashboard:index"))
    pages["report"] = client.get(reverse("dashboard:report"))
    client.force_login(admin_user)
    pages["trail"] = client.get(reverse("oversight:index"), {"study_id": sid, "field": "odi_score"})
    pages["patient history"] = client.get(reverse("oversight:patient_history", args=[sid]))
    readings = {}
    for name, response in pages.items():
        assert response.status_code == 200, name
        text = _visible(response.content.decode())
        if name == "report":  # the figures' coordinates are numbers too: read the outcomes table
            text = text[text.index("Outcomes: follow-up compared with baseline") :][:4000]
        readings[name] = _odi_readings(text)
    assert readings == {name: {"77.78"} for name in pages}


def test_with_one_patient_the_key_results_agree_with_the_charts_table(client, case, investigator):
    client.force_login(investigator)
    response = client.get(reverse("dashboard:index"))
    html = response.content.decode()
    key_results = _visible(html[html.index('id="key-results"') : html.index("</ul>", html.index('id="key-results"'))])
    # one pair: its values are the means (no SD, no test: summary.md), as the chart's table beside shows them
    assert "7.00 → 3.50" in key_results
    assert "77.78 → 40.00" in key_results
    course = response.context["charts"]["course"]["vas"]
    assert [p["mean"] for p in course] == [7.0, 3.5]
    outcomes = _visible(html[html.index('id="outcomes-title"') : html.index('id="responders-title"')])
    assert "– → –" not in key_results and "7.00 [7.00-7.00]" in outcomes


def test_stored_decimals_read_as_entered_in_the_forms_and_on_the_patient_page(client, case, nurse):
    client.force_login(nurse)
    form = client.get(reverse("outcomes:visit", args=[case.study_id, "baseline"])).content.decode()
    assert re.search(r'name="vas"[^>]*value="7"', form) or re.search(r'value="7"[^>]*name="vas"', form)
    assert re.search(r'value="60"[^>]*name="med-0-daily_dose"|name="med-0-daily_dose"[^>]*value="60"', form)
    assert "60.000" not in form and 'value="7.0"' not in form
    page = _visible(client.get(reverse("patients:detail", args=[case.study_id])).content.decode())
    assert re.search(r"\b7\s+77\.78\b", page) and re.search(r"\b3\.5\s+40\.00\b", page)  # VAS, then ODI
    assert "cement 6 mL" in " ".join(page.split())


def test_a_querys_value_reads_as_entered(client, case, site):
    from oversight import services
    from tests.factories import UserFactory

    monitor = UserFactory(username="monitor", role="monitor")
    monitor.sites.add(site)
    visit = FollowUp.objects.get(timepoint="baseline")
    query = services.raise_query(record=visit, field="vas", question="Is it 7?", user=monitor)
    client.force_login(monitor)
    html = client.get(reverse("oversight:query", args=[query.pk])).content.decode()
    assert '<code id="raised-value">7</code>' in html and '<code id="current-value">7</code>' in html


@pytest.mark.parametrize(
    "value, decimals, text",
    [  # worked by hand: half up, plain digits, no grouping, no negative zero
        (Decimal("2.345"), 2, "2.35"),
        (Decimal("-2.345"), 2, "-2.35"),
        (Decimal("1234567.5"), 0, "1234568"),
        (Decimal("60"), 1, "60.0"),
        (Decimal("-0.001"), 2, "0.00"),
        (35 / 45 * 100, 2, "77.78"),
        (Decimal("0.5"), 0, "1"),
    ],
)
def test_unlocalised_fixed_numbers_are_plain_digits_rounded_half_up(value, decimals, text):
    """Files and the trail take `fixed(..., localize=False)`, in any page language."""
    for language in ("en", "zh-hans"):
        with translation.override(language):
            assert measures.fixed(value, decimals, localize=False) == text


def test_the_trails_name_of_a_record_is_english_whoever_saves(case):
    """object_repr is stored once, in English, also when the nurse's page is in Chinese."""
    from procedures.models import Complication, Leakage

    medication = Medication(drug=Medication.Drug.FENTANYL_TD, daily_dose=Decimal("25.000"))
    leakage = Leakage(site="foraminal")
    complication = Complication(type="intestinal_rupture", cirse_grade=2)
    with translation.override("zh-hans"):
        assert str(medication) == "Fentanyl transdermal 25 mcg/h"
        assert str(leakage) == "Sacral foramen leakage"
        assert str(complication) == "Intestinal rupture (CIRSE 2)"
        assert str(Leakage(site="unknown")) == "unknown leakage"  # outside the choices: the value itself
