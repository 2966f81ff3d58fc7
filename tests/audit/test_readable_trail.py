"""The audit trail as an admin reads it: record names and field labels instead of model and
field names, study IDs and site codes instead of ids, values formatted, a field filter that
shows only that field's changes, a fixed number of queries, and a CSV that stays complete."""

import csv
import datetime
import io
import re
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import formats, translation

from audit import display
from audit.services import record_search
from outcomes.models import FollowUp, Medication
from outcomes.services import record_visit
from patients.models import Patient
from patients.services import enrol_patient, record_consent, update_patient
from procedures.services import record_procedure
from tests.factories import ConsentFactory, ConsentVersionFactory, PatientFactory, ProcedureFactory, SiteFactory

pytestmark = pytest.mark.django_db
TODAY = datetime.date.today()
PROCEDURE_DAY = TODAY - datetime.timedelta(days=2)


def _text(response) -> str:
    html = re.sub(r"<script.*?</script>", " ", response.content.decode(), flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def _rows(response) -> list[tuple[str, str, str]]:
    """(label, old, new) of every change row on the page, as the cells read."""
    html = response.content.decode()
    cells = re.findall(r'<tr><td title="[^"]*">(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>', html, flags=re.S)
    return [tuple(" ".join(c.split()) for c in row) for row in cells]


def _case(site, nurse, vas_at_baseline: str = "8") -> Patient:
    """A patient written through the services, so every write is in the trail."""
    patient = PatientFactory.build(site=site, study_id="", enrolment_date=TODAY - datetime.timedelta(days=10), ecog=1)
    enrol_patient(patient=patient, user=nurse)
    record_consent(consent=ConsentFactory.build(patient=patient, consent_version=ConsentVersionFactory()), user=nurse)
    procedure = ProcedureFactory.build(patient=patient, procedure_date=PROCEDURE_DAY)
    record_procedure(procedure=procedure, user=nurse)
    visit = FollowUp(
        patient=patient,
        timepoint="baseline",
        visit_date=PROCEDURE_DAY - datetime.timedelta(days=1),
        vas=Decimal(vas_at_baseline),
    )
    record_visit(visit=visit, medications=[Medication(drug="morphine", daily_dose=Decimal("60"))], user=nurse)
    return patient


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def test_records_fields_and_ids_read_as_names(admin_client, site, nurse):
    patient = _case(site, nurse)
    response = admin_client.get(reverse("oversight:index"), {"study_id": patient.study_id})
    text = _text(response)
    # the models' names, never app_label.Model
    for name in ("Follow-up visit", "Patient", "Consent record", "Procedure", "Opioid"):
        assert name in text
    assert "outcomes.FollowUp" not in text and "patients.Patient" not in text
    rows = _rows(response)
    # foreign keys: the patient's study ID and the site's code, not their ids
    assert ("Enrolling site", "—", "PSP") in rows
    assert any(new == patient.study_id for label, old, new in rows if label.lower() == "patient")
    assert not any(new == str(patient.pk) for label, old, new in rows if label.lower() == "patient")
    # choice labels, yes/no, dates and numbers by the rule
    assert ("Visit status", "—", "Completed") in rows
    assert ("Primary tumour", "—", "Lung") in rows
    assert ("Prior systemic therapy", "—", "Yes") in rows
    assert ("Total daily dose", "—", "60") in rows  # entered as 60, stored 60.000
    assert "Morphine 60 mg/day" in text
    assert not [row for row in rows if row[1:] == ("—", "—")]  # a create lists only what it filled
    assert ("Pain, visual analogue scale (0-10)", "—", "8") in rows
    assert ("Date of enrolment", "—", formats.date_format(patient.enrolment_date)) in rows


@pytest.mark.parametrize(("language", "shown"), [("en", "March 1, 2024"), ("zh-hans", "2024年3月1日")])
def test_dates_read_in_the_pages_language(language, shown):
    with translation.override(language):
        assert display.value_text(Patient._meta.get_field("enrolment_date"), "2024-03-01", {}) == shown


def test_an_edit_reads_old_and_new_by_the_number_rule(admin_client, site, nurse):
    patient = _case(site, nurse, vas_at_baseline="8")
    visit = FollowUp.objects.get(patient=patient)
    visit.vas = Decimal("7")
    record_visit(visit=visit, user=nurse, reason="re-measured", expected_version=visit.version)
    response = admin_client.get(reverse("oversight:index"), {"action": "update", "study_id": patient.study_id})
    assert _rows(response) == [("Pain, visual analogue scale (0-10)", "8", "7")]  # not "8.0 → 7"


def test_the_field_filter_shows_only_that_fields_changes(admin_client, site, nurse):
    patient = _case(site, nurse)
    PatientFactory(site=site)  # written around the services: not in the trail at all
    patient.ecog = 2
    update_patient(patient=patient, user=nurse, reason="re-assessed", expected_version=patient.version)
    for text in ("ecog", "ECOG performance status"):  # by its name or by its label
        response = admin_client.get(reverse("oversight:index"), {"field": text})
        entries = response.context["entries"]
        assert [(e.event.action, e.event.model) for e in entries] == [
            ("update", "patients.Patient"),
            ("create", "patients.Patient"),
        ]
        assert {c.field for e in entries for c in e.changes} == {"ecog"}
    # a create that left the field empty or blank changed nothing: no DAP, no deviation note recorded
    for empty in ("dose_area_product_gycm2", "deviation_note"):
        page = admin_client.get(reverse("oversight:index"), {"field": empty}).context["page"]
        assert page.paginator.count == 0, empty


def test_the_trail_page_takes_the_same_queries_whatever_its_size(admin_client, django_assert_num_queries, nurse):
    """Every kind of record (patient, site key, consent with its version, procedure, visit, opioid) on
    the page at two sizes: the names of what the keys point at come in one query per model."""

    def fill(n: int, code: str) -> None:
        site = SiteFactory(code=code)
        nurse.sites.add(site)
        for _ in range(n):
            _case(site, nurse)

    fill(1, "A")
    # session, user, second-factor device, count, one page of events; the names the page's keys
    # point at: visits (an opioid's), patients, consent versions, sites; session save (savepoint,
    # update, release)
    with django_assert_num_queries(12):
        admin_client.get(reverse("oversight:index"))
    fill(11, "B")
    with django_assert_num_queries(12):
        response = admin_client.get(reverse("oversight:index"))
    assert len(response.context["page"]) == 50
    assert {e.event.model for e in response.context["entries"]} >= {
        "patients.Patient",
        "patients.Consent",
        "procedures.Procedure",
        "outcomes.FollowUp",
        "outcomes.Medication",
    }


def test_the_csv_keeps_every_raw_value(admin_client, site, nurse):
    patient = _case(site, nurse)
    response = admin_client.get(reverse("oversight:trail_csv"), {"study_id": patient.study_id, "action": "create"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    by_field = {(r["model"], r["field"]): r for r in rows}
    assert by_field[("patients.Patient", "site")]["new_value"] == str(site.pk)  # raw: the id
    assert by_field[("outcomes.Medication", "daily_dose")]["new_value"] == "60.000"
    assert by_field[("outcomes.FollowUp", "status")]["new_value"] == "completed"
    assert ("procedures.Procedure", "dose_area_product_gycm2") in by_field  # empty fields too


def test_the_trail_reads_in_chinese(admin_client, site, nurse):
    patient = _case(site, nurse)
    try:
        response = admin_client.get(
            reverse("oversight:index"), {"study_id": patient.study_id}, HTTP_ACCEPT_LANGUAGE="zh-hans"
        )
    finally:  # LocaleMiddleware leaves the request's language active in the test's thread
        translation.activate("en")
    text = _text(response)
    assert "稽查轨迹" in text  # the page's title
    assert "已创建" in text and "随访" in text  # the action and the record's name
    for english in ("Created", "Follow-up visit", "events; times in UTC", "Old value", "Download CSV"):
        assert english not in text


def test_an_events_details_read_by_their_names(admin_client, nurse):
    record_search(user=nurse, term="Wang")
    text = _text(admin_client.get(reverse("oversight:index"), {"action": "search"}))
    assert "Search term: Wang" in text  # the key "term" by its name


def test_the_patient_pages_change_history_reads_like_the_trail(client, site, nurse):
    patient = _case(site, nurse, vas_at_baseline="8")
    visit = FollowUp.objects.get(patient=patient)
    visit.vas = Decimal("7")
    record_visit(visit=visit, user=nurse, reason="re-measured", expected_version=visit.version)
    client.force_login(nurse)
    html = client.get(reverse("patients:detail", args=[patient.study_id])).content.decode()
    history = _text_of(html[html.index('id="history"') :])
    assert "Pain, visual analogue scale (0-10): 8 → 7" in history  # not "vas: 8.0 → 7"
    assert "8.0" not in history


def _text_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split()).replace(" :", ":")


def test_the_record_filter_offers_records_not_the_tables_the_triggers_derive(admin_client):
    choices = dict(admin_client.get(reverse("oversight:index")).context["form"].fields["model"].choices)
    assert "outcomes.FollowUp" in choices and "patients.Consent" in choices
    # the worklist's and the dashboard's derived rows are never written by a person: no trail of their own
    assert not {"outcomes.DueWindow", "outcomes.AwaitingProcedure", "outcomes.AnalysisRow"} & set(choices)


def test_a_log_ins_details_read_by_their_names(client, nurse):
    from audit.models import AuditEvent

    nurse.set_password("a long enough password 1")
    nurse.save()
    client.post(reverse("login"), {"username": nurse.username, "password": "a long enough password 1"})
    event = AuditEvent.objects.filter(action=AuditEvent.Action.LOGIN).latest("id")
    with translation.override("zh-hans"):
        names = [name for name, _ in display.Entry(event, "").details]
    assert "IP 地址" in names and "浏览器" in names
