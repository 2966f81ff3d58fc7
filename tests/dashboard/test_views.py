import pytest
from django.urls import reverse

from dashboard.selectors import cohort_rows
from patients.models import Consent, Patient
from tests.dashboard.cohort import make_cohort

PAGE = "/dashboard/"
JSON = "/dashboard/summary.json"


def test_the_urls_are_named():
    assert reverse("dashboard:index") == PAGE
    assert reverse("dashboard:summary_json") == JSON


def test_anonymous_users_are_sent_to_log_in_for_the_page(client, db):
    response = client.get(PAGE)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_anonymous_users_get_403_json_not_a_redirect(client, db):
    response = client.get(JSON)
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert "error" in response.json()


def test_the_page_shows_the_papers_figures(client, demo_cohort, investigator):
    client.force_login(investigator)
    response = client.get(PAGE)
    assert response.status_code == 200
    html = response.content.decode()
    for figure in (
        "6.90 ± 1.20 → 2.70 ± 1.34",
        "74.40 ± 5.48 → 29.60 ± 14.57",
        "2 [1-3] → 1 [0-3]",
        "Pain relief (VAS drop ≥ 3 points): 9/10 (90%)",
        "presacral soft tissue 3/10 (30%)",
        "stopped 4, decreased 5, unchanged 1, increased 0",
        "Lesions treated</th><td>21",
    ):
        assert figure in html
    assert 'id="dashboard-data"' in html and "js/dashboard.js" in html
    assert "We analysed 10 patients" in html and "SciPy" in html


def test_filters_narrow_the_page_and_the_methods_paragraph(client, demo_cohort, investigator):
    client.force_login(investigator)
    html = client.get(PAGE, {"primary_tumour": "lung"}).content.decode()
    assert "We analysed 4 patients" in html and "primary tumour lung" in html
    empty = client.get(PAGE, {"approach": "transiliac"})
    assert empty.status_code == 200 and "We analysed 0 patients" in empty.content.decode()


def test_invalid_filters_are_refused_with_the_reason(client, demo_cohort, investigator):
    client.force_login(investigator)
    page = client.get(PAGE, {"procedure_from": "2018-01-01", "procedure_to": "2017-01-01"})
    assert page.status_code == 400 and "before its start" in page.content.decode()
    response = client.get(JSON, {"approach": "sideways"})
    assert response.status_code == 400 and "approach" in response.json()["fields"]


def test_a_nurse_sees_only_her_sites(client, demo_cohort, other_nurse):
    client.force_login(other_nurse)
    assert client.get(JSON).json()["cohort"]["patients"] == 0
    assert client.get(JSON, {"site": "PSP"}).status_code == 400  # not one of her sites


def test_the_json_carries_the_applied_filters(client, demo_cohort, admin_user):
    client.force_login(admin_user)
    summary = client.get(JSON, {"site": "PSP", "procedure_from": "2017-06-01"}).json()
    assert summary["filters"] == {"site": "PSP", "procedure_from": "2017-06-01"}
    assert summary["cohort"]["patients"] == 8


def test_patients_withdrawn_with_remove_data_are_never_counted(client, demo_cohort, investigator):
    consent = Consent.objects.get(patient__study_id="PSP-0008")
    consent.withdrawn_date, consent.withdrawal_scope = consent.signed_date, "remove_data"
    consent.save()
    client.force_login(investigator)
    summary = client.get(JSON).json()
    assert summary["cohort"] == {"patients": 9, "excluded_withdrawn": 1, "procedures": 9}
    assert summary["responders"]["post"]["vas_drop_ge_3"] == 9  # PSP-0008 was the non-responder
    assert "PSP-0008" not in client.get(PAGE).content.decode()


def test_the_selector_runs_six_queries_whatever_the_cohort(demo_cohort, django_assert_num_queries):
    # patients, procedures, leakages, complications, visits, and the count of removed patients
    with django_assert_num_queries(6):
        small = cohort_rows(None, {})
    make_cohort(seed=3, patients=30)
    with django_assert_num_queries(6):
        large = cohort_rows(None, {"procedure_from": "2000-01-01"})
    assert len(large.patients) > len(small.patients)


@pytest.mark.parametrize("extra_patients", [0, 40])
def test_the_page_query_count_does_not_grow_with_the_cohort(
    client, demo_cohort, admin_user, django_assert_num_queries, extra_patients
):
    make_cohort(seed=5, patients=extra_patients)
    client.force_login(admin_user)
    # session and user (2), the six selector queries, the filter form's site choices (1),
    # and the session saved on every request (savepoint, update, release: 3)
    with django_assert_num_queries(12):
        response = client.get(PAGE)
    assert response.status_code == 200
    assert Patient.objects.count() == 10 + extra_patients
