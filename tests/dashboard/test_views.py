import datetime
import math

import pytest
from django.urls import reverse

from dashboard.selectors import cohort_columns
from patients.models import Consent, Patient
from tests.dashboard.cohort import make_cohort
from tests.exchange.zips import export, table
from tests.factories import ConsentFactory, FollowUpFactory, PatientFactory, ProcedureFactory, SiteFactory

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
    # levels read as on every other page (the paper's 8 patients treated at S1 and S2), codes only in the JSON
    assert "Levels treated S1–S2</th><td>8/10 (80%)" in html and "S1|S2" not in html


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
    assert summary["cohort"] == {"patients": 9, "excluded_withdrawn": 1, "awaiting_consent": 0, "procedures": 9}
    assert summary["responders"]["post"]["vas_drop_ge_3"] == 9  # PSP-0008 was the non-responder
    assert "PSP-0008" not in client.get(PAGE).content.decode()


def test_the_selector_runs_two_queries_whatever_the_cohort(demo_cohort, django_assert_num_queries):
    # the analysed patients' packed rows (one binary COPY), and one query counting removed and
    # unconsented patients
    with django_assert_num_queries(2):
        small = cohort_columns(None, {})
    make_cohort(seed=3, patients=30)
    with django_assert_num_queries(2):
        large = cohort_columns(None, {"procedure_from": "2000-01-01"})
    assert len(large) > len(small) == 10


@pytest.mark.parametrize("extra_patients", [0, 40])
def test_the_page_query_count_does_not_grow_with_the_cohort(
    client, demo_cohort, admin_user, django_assert_num_queries, extra_patients
):
    make_cohort(seed=5, patients=extra_patients)
    client.force_login(admin_user)
    # session and user (2), the two selector queries, the page's complications by grade and
    # VAS lines (2), the filter form's site choices (1),
    # the admin's second-factor device (1), and the session saved on every request
    # (savepoint, update, release: 3)
    with django_assert_num_queries(11):
        response = client.get(PAGE)
    assert response.status_code == 200
    assert Patient.objects.count() == 10 + extra_patients


# ---- the analysis population: latest consent in force, never "remove data" ---------------


def _treated_patient(site, study_id, **fields):
    """A patient with an index procedure and baseline/post VAS 9 -> 1 (a responder), no consent yet."""
    patient = PatientFactory(site=site, study_id=study_id, **fields)
    ProcedureFactory(patient=patient, procedure_date=datetime.date(2024, 3, 5))
    FollowUpFactory(patient=patient, timepoint="baseline", visit_date=datetime.date(2024, 3, 4), vas=9)
    FollowUpFactory(patient=patient, timepoint="post", visit_date=datetime.date(2024, 3, 6), vas=1)
    return patient


def test_an_unconsented_patient_is_neither_analysed_nor_exported(client, demo_cohort, investigator):
    site = Patient.objects.get(study_id="PSP-0001").site
    _treated_patient(site, "PSP-0901", primary_tumour="breast")
    client.force_login(investigator)
    summary = client.get(JSON).json()
    assert summary["cohort"] == {"patients": 10, "excluded_withdrawn": 0, "awaiting_consent": 1, "procedures": 10}
    assert summary["responders"]["post"]["vas_of"] == 10  # her 9 -> 1 is not counted
    assert "breast" not in summary["table1"]["primary_tumour"]
    page = client.get(PAGE).content.decode()
    assert "PSP-0901" not in page and "1 patient awaiting a registry-use consent not analysed" in page
    assert "1 patient without a registry-use consent in force was not analysed." in page  # the methods
    zf = export(user=investigator)
    assert [p["study_id"] for p in table(zf, "patients")] == [f"PSP-{i:04d}" for i in range(1, 11)]
    assert not [v for v in table(zf, "followups") if v["study_id"] == "PSP-0901"]
    assert "breast" not in zf.read("analysis_wide.csv").decode()


def test_the_latest_consent_decides_re_consent_after_a_refusal(client, demo_cohort, investigator):
    site = Patient.objects.get(study_id="PSP-0001").site
    refused_then_agreed = _treated_patient(site, "PSP-0902")
    ConsentFactory(patient=refused_then_agreed, signed_date=datetime.date(2024, 3, 1), scope_registry=False)
    agreed_then_refused = _treated_patient(site, "PSP-0903")
    ConsentFactory(patient=agreed_then_refused, signed_date=datetime.date(2024, 3, 1))
    client.force_login(investigator)
    before = client.get(JSON).json()["cohort"]
    assert (before["patients"], before["awaiting_consent"]) == (11, 1)  # PSP-0903 only
    ConsentFactory(patient=refused_then_agreed, signed_date=datetime.date(2024, 3, 2), scope_registry=True)
    # Same signed date as her first consent: the later record (higher id) is the latest.
    ConsentFactory(patient=agreed_then_refused, signed_date=datetime.date(2024, 3, 1), scope_registry=False)
    after = client.get(JSON).json()
    assert (after["cohort"]["patients"], after["cohort"]["awaiting_consent"]) == (11, 1)
    assert [p["study_id"] for p in table(export(user=investigator), "patients")][-1] == "PSP-0902"
    assert "PSP-0903" not in [p["study_id"] for p in table(export(user=investigator), "patients")]


def test_a_no_new_data_withdrawal_keeps_the_patient_in_the_analysis(client, demo_cohort, investigator):
    consent = Consent.objects.get(patient__study_id="PSP-0008")
    consent.withdrawn_date, consent.withdrawal_scope = consent.signed_date, "no_new_data"
    consent.save()
    client.force_login(investigator)
    cohort = client.get(JSON).json()["cohort"]
    assert (cohort["patients"], cohort["excluded_withdrawn"], cohort["awaiting_consent"]) == (10, 0, 0)


def test_removed_and_unconsented_patients_are_counted_whatever_the_filters(client, demo_cohort, admin_user):
    """Counting them per filter would tell the site, tumour and dates of a removed patient."""
    other = SiteFactory(code="ZZ")
    removed = _treated_patient(other, "ZZ-0001", primary_tumour="kidney")
    ConsentFactory(
        patient=removed,
        signed_date=datetime.date(2024, 3, 1),
        withdrawn_date=datetime.date(2024, 4, 1),
        withdrawal_scope="remove_data",
    )
    ConsentFactory(patient=removed, signed_date=datetime.date(2024, 5, 1))  # a re-consent does not undo it
    _treated_patient(other, "ZZ-0002", primary_tumour="kidney")  # never consented
    client.force_login(admin_user)
    for filters in ({}, {"site": "ZZ"}, {"site": "PSP"}, {"primary_tumour": "kidney"}, {"approach": "transiliac"}):
        cohort = client.get(JSON, filters).json()["cohort"]
        assert (cohort["excluded_withdrawn"], cohort["awaiting_consent"]) == (1, 1), filters
    assert client.get(JSON, {"site": "ZZ"}).json()["cohort"]["patients"] == 0


def test_a_nurse_counts_only_the_removed_patients_of_her_sites(client, demo_cohort, other_nurse):
    consent = Consent.objects.get(patient__study_id="PSP-0008")
    consent.withdrawn_date, consent.withdrawal_scope = consent.signed_date, "remove_data"
    consent.save()
    client.force_login(other_nurse)
    cohort = client.get(JSON).json()["cohort"]
    assert (cohort["patients"], cohort["excluded_withdrawn"], cohort["awaiting_consent"]) == (0, 0, 0)


def test_the_page_shows_each_responder_rate_over_its_own_denominator(client, demo_cohort, investigator):
    # PSP-0001's post-procedure ODI becomes unscorable (8 of 10 sections): 10 VAS pairs, 9 ODI pairs.
    from outcomes.models import FollowUp

    visit = FollowUp.objects.get(patient__study_id="PSP-0001", timepoint="post")
    visit.odi_q9 = visit.odi_q10 = None
    visit.odi_min_sections = 9
    visit.compute_derived()
    visit.save()
    assert visit.odi_score is None
    client.force_login(investigator)
    responders = client.get(JSON).json()["responders"]["post"]
    assert (responders["vas_of"], responders["odi_of"], responders["odi_drop_ge_10"]) == (10, 9, 9)
    html = client.get(PAGE).content.decode()
    assert "<td>9/10 (90%)</td><td>10/10 (100%)</td><td>9/9 (100%)</td>" in html


def test_the_page_shows_the_survival_curve_and_table(client, demo_cohort, investigator):
    client.force_login(investigator)
    html = client.get(PAGE).content.decode()
    assert 'id="chart-survival"' in html and "Number at risk" in html
    assert "10 patients with an index procedure: 0 deaths, 10 censored" in html
    assert "not estimable" in html and "not reached" in html


def test_survival_through_the_json_worked_by_hand(client, demo_cohort, investigator):
    # PSP-0001 dies on day 100. PSP-0002 withdraws ("no further contact") on day 200: her
    # withdrawal date is the last date she was known alive. The other eight are censored
    # within a week (discharge or post visit).
    #   day 100: at risk 2 (days 100 and 200), 1 death: S = 1/2, Greenwood G = 1/(2*1) = 1/2
    #   day 91: no death yet, S = 1 [1, 1], at risk 2; day 183: S = 1/2, at risk 1; day 365: beyond everyone
    #   median 100; its interval: the lower bound at 100 is <= S = 1/2; the upper bound is
    #   0.5^exp(-h), h = 1.96 * sqrt(1/2) / ln 2 = 2.0, i.e. 0.5^0.135 = 0.91: never <= 0.5.
    first = Patient.objects.get(study_id="PSP-0001")
    first.death_date = first.index_procedure_date + datetime.timedelta(days=100)
    first.save()
    second = Patient.objects.get(study_id="PSP-0002")
    consent = second.consents.get()
    consent.withdrawn_date = second.index_procedure_date + datetime.timedelta(days=200)
    consent.withdrawal_scope = "no_contact"
    consent.save()
    client.force_login(investigator)
    survival = client.get(JSON).json()["survival"]
    assert (survival["n"], survival["deaths"], survival["censored"]) == (10, 1, 9)
    assert survival["at"]["m3"] == {"days": 91, "survival": 1.0, "ci95": [1.0, 1.0], "at_risk": 2}
    m6 = survival["at"]["m6"]
    h = 1.959963984540054 * (1 / 2) ** 0.5 / math.log(2)
    assert (m6["survival"], m6["at_risk"]) == (0.5, 1)
    assert m6["ci95"] == pytest.approx([0.5 ** math.exp(h), 0.5 ** math.exp(-h)], rel=1e-12)
    assert 0.90 < m6["ci95"][1] < 0.92
    assert survival["at"]["m12"] == {"days": 365, "survival": None, "ci95": None, "at_risk": 0}
    assert survival["median_days"] == 100 and survival["median_ci95"] == [100, None]
    # The same filters as everything else: without PSP-0001's tumour, nobody dies.
    tumour = first.primary_tumour
    other = client.get(JSON, {"primary_tumour": "liver" if tumour != "liver" else "lung"}).json()["survival"]
    assert other["deaths"] == 0


def test_the_complications_table_counts_only_the_cohorts_complications(demo_cohort, nurse, other_nurse, other_site):
    from dashboard.selectors import complication_rows
    from procedures.models import Complication
    from tests.factories import ComplicationFactory

    own = Complication.objects.filter(procedure__procedure_number=1, procedure__patient__site=nurse.sites.get())
    patient = PatientFactory(site=other_site)
    ConsentFactory(patient=patient)
    index = ProcedureFactory(patient=patient)
    ComplicationFactory(procedure=index, severity="minor", cirse_grade=2)
    second = ProcedureFactory(patient=patient, procedure_number=2)
    ComplicationFactory(procedure=second, severity="minor", cirse_grade=3)
    # the other site's nurse: her one index-procedure complication (not the second procedure's)
    assert [(kind, grade, n, who) for kind, _, grade, n, who in complication_rows(other_nurse, {})] == [
        ("urinary_retention", 2, 1, 1)
    ]
    # the demo site's nurse: hers only, counted from the records (the other site's would make one more)
    assert sum(n for *_, n, _ in complication_rows(nurse, {})) == own.count()
