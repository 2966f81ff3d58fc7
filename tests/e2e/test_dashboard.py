import datetime

import pytest
from playwright.sync_api import expect


@pytest.mark.django_db(transaction=True)
def test_an_investigator_sees_the_papers_figures_filters_and_charts(
    page, log_in, live_server, demo_cohort, investigator
):
    errors = []
    page.on("console", lambda msg: "Content Security Policy" in msg.text and errors.append(msg.text))
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda r: r.status >= 400 and "favicon" not in r.url and errors.append(r.url))
    log_in("investigator")
    page.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", name="Dashboard", exact=True)).to_be_visible()

    key = page.locator("#key-results")
    expect(key).to_contain_text("6.90 ± 1.20 → 2.70 ± 1.34")
    expect(key).to_contain_text("74.40 ± 5.48 → 29.60 ± 14.57")
    expect(key).to_contain_text("2 [1-3] → 1 [0-3]")
    expect(key).to_contain_text("9/10 (90%)")
    expect(key).to_contain_text("presacral soft tissue 3/10 (30%)")

    assert page.evaluate("typeof window.Chart") == "function"
    for chart in (
        "chart-vas-course",
        "chart-odi-course",
        "chart-spaghetti",
        "chart-opioids",
        "chart-leakage",
        "chart-survival",
    ):
        assert page.evaluate(f"!!window.Chart.getChart(document.getElementById('{chart}'))"), chart
    assert errors == []  # no CSP violation, no script error

    page.get_by_label("Primary tumour").select_option("liver")
    page.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url(
        f"{live_server.url}/dashboard/?site=&approach=&primary_tumour=liver&procedure_from=&procedure_to="
    )
    expect(page.locator("#methods")).to_contain_text("We analysed 3 patients")
    expect(page.locator("#methods")).to_contain_text("primary tumour liver")
    assert page.evaluate("!!window.Chart.getChart(document.getElementById('chart-spaghetti'))")


@pytest.mark.django_db(transaction=True)
def test_the_kaplan_meier_curve_steps_marks_censoring_and_prints_the_number_at_risk(
    page, log_in, live_server, demo_cohort, investigator
):
    from patients.models import Patient

    # Two deaths after the demo's index procedures: PSP-0001 at day 20 and PSP-0002 at day 40;
    # the other eight are censored at their last contact (day 1 or 2). Worked by hand:
    # at day 20 n = 2 (the two who die), d = 1: S = 1/2; at day 40 n = 1, d = 1: S = 0.
    for study_id, days in (("PSP-0001", 20), ("PSP-0002", 40)):
        patient = Patient.objects.get(study_id=study_id)
        patient.death_date = patient.index_procedure_date + datetime.timedelta(days=days)
        patient.save()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    log_in("investigator")
    page.goto(f"{live_server.url}/dashboard/")
    table = page.locator("#survival-table")
    expect(table).to_contain_text("10 patients with an index procedure: 2 deaths, 8 censored")
    expect(table).to_contain_text("20 days")  # the median: the first time S <= 0.5
    chart = "window.Chart.getChart(document.getElementById('chart-survival'))"
    curve = page.evaluate(f"{chart}.data.datasets[2].data.map(p => [p.x, p.y])")
    assert curve == [[0, 1], [20, 0.5], [40, 0]]
    assert page.evaluate(f"{chart}.data.datasets[2].stepped") is True
    censored = page.evaluate(f"{chart}.data.datasets[3].data.map(p => [p.x, p.y])")
    last_contact = set()  # the eight survivors' last discharge, visit or consent date, in days
    for patient in Patient.objects.filter(death_date__isnull=True):
        dates = [d for proc in patient.procedures.all() for d in (proc.procedure_date, proc.discharge_date)]
        dates += [v.visit_date for v in patient.followups.filter(status="completed")]
        dates += [c.signed_date for c in patient.consents.all()]
        last_contact.add((max(dates) - patient.index_procedure_date).days)
    assert sorted(censored) == [[day, 1] for day in sorted(last_contact)]  # one mark per time, on the curve
    ticks = page.evaluate(f"{chart}.scales.x.ticks.map(t => t.value)")
    at_risk = page.evaluate(f"{chart}.scales.atRisk.ticks.map(t => String(t.label))")
    assert ticks == [0, 30, 60] and at_risk == ["10", "1", "0"]
    expect(page.locator("#survival-at-risk")).to_contain_text("At risk")
    assert errors == []
