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
    for chart in ("chart-vas-course", "chart-odi-course", "chart-spaghetti", "chart-opioids", "chart-leakage"):
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
