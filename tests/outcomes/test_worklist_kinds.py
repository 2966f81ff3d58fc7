"""The worklist's kind filter: visits due, open queries, self-reports to review, or all of them."""

import datetime

import pytest
from django.urls import reverse

from oversight.services import raise_query
from registry.dates import today
from tests.factories import ConsentFactory, FollowUpFactory, PatientFactory, ProcedureFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def queried(site):
    """A patient with an overdue visit and an open query on her baseline VAS."""
    patient = PatientFactory(site=site, enrolment_date=today() - datetime.timedelta(days=70))
    ConsentFactory(patient=patient, signed_date=today() - datetime.timedelta(days=70))
    ProcedureFactory(patient=patient, procedure_date=today() - datetime.timedelta(days=60))
    visit = FollowUpFactory(patient=patient, timepoint="baseline", visit_date=today() - datetime.timedelta(days=61))
    monitor = UserFactory(username="mona", role="monitor")
    monitor.sites.set([site])
    raise_query(record=visit, field="vas", question="Source says 6, not 7?", user=monitor)
    return patient


@pytest.mark.parametrize(
    "kind, queries_shown, visits_shown",
    [("", True, True), ("visits", False, True), ("queries", True, False), ("selfreports", False, False)],
)
def test_the_kind_filter_shows_only_that_work(client, nurse, queried, kind, queries_shown, visits_shown):
    client.force_login(nurse)
    page = client.get(reverse("patients:worklist"), {"kind": kind} if kind else {}).content.decode()
    assert ('id="worklist-monitoring"' in page) is queries_shown
    assert ("Source says 6, not 7?" in page) is queries_shown
    assert ('id="worklist-groups"' in page) is visits_shown  # the visits' groups and table
    assert 'id="worklist-kinds"' in page


def test_an_unknown_kind_is_refused_naming_the_filter(client, nurse, queried):
    client.force_login(nurse)
    response = client.get(reverse("patients:worklist"), {"kind": "everything"})
    assert response.status_code == 400 and "Kind of work" in response.content.decode()


def test_a_monitor_reads_the_patient_page_without_edit_buttons_and_a_nurse_has_them(client, nurse, queried, site):
    monitor = UserFactory(username="mona")
    client.force_login(monitor)
    page = client.get(reverse("patients:detail", args=[queried.study_id])).content.decode()
    assert queried.study_id in page and "Edit patient" not in page and "Edit procedure" not in page
    client.force_login(nurse)
    page = client.get(reverse("patients:detail", args=[queried.study_id])).content.decode()
    assert "Edit patient" in page and "Edit procedure 1" in page
