"""Issue 16: axe-core on every main page of every role, in a real browser (headless Chromium).

axe-core (Deque's rule engine, run by axe-playwright-python, which ships axe.min.js)
is the oracle: a page passes when axe finds no violation of impact "serious" or
"critical" (contrast, names of controls and images, labels, ARIA misuse...).
Moderate and minor findings (best-practice rules such as "region") are not gates.
A failure lists page, rule, impact and the first elements, so it reads without a
browser.
"""

import datetime
from decimal import Decimal

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect

from oversight.services import raise_query
from tests.conftest import confirmed_totp
from tests.factories import (
    PASSWORD,
    ConsentFactory,
    ConsentVersionFactory,
    FollowUpFactory,
    PatientFactory,
    ProcedureFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db(transaction=True)
TODAY = datetime.date.today()
GATING = {"serious", "critical"}
AXE = Axe()


def violations(page: Page, name: str) -> list[str]:
    """The serious and critical axe findings of the page now shown, one readable line each."""
    page.wait_for_load_state("networkidle")  # charts and scripts have drawn
    found = AXE.run(page).response["violations"]
    lines = []
    for v in found:
        if v["impact"] not in GATING:
            continue
        targets = [" ".join(n["target"]) if isinstance(n["target"], list) else str(n["target"]) for n in v["nodes"]]
        first = v["nodes"][0]
        why = next((c["message"] for c in first["any"] + first["all"] + first["none"]), v["help"])
        lines.append(f"{name}: {v['id']} ({v['impact']}) x{len(targets)}: {'; '.join(targets[:3])} — {why}")
    # axe leaves a reference to a missing id "incomplete" (it could appear later); on a loaded page it is a
    # description or label that is never read out, so it counts here.
    dangling = page.evaluate(
        """() => [...document.querySelectorAll('[aria-describedby], [aria-labelledby]')].flatMap(e =>
             ['aria-describedby', 'aria-labelledby'].flatMap(a => (e.getAttribute(a) || '').split(/\\s+/)
               .filter(id => id && !document.getElementById(id)).map(id => `${e.tagName.toLowerCase()}#${e.id} ${a}=${id}`)))"""
    )
    lines += [f"{name}: reference to a missing id (serious): {d}" for d in dangling]
    return lines


def log_in_as(page: Page, url: str, username: str) -> None:
    page.goto(f"{url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def check(page: Page, url: str, pages: dict[str, str]) -> list[str]:
    problems = []
    for name, path in pages.items():
        response = page.goto(url + path)
        assert response is not None and response.status == 200, f"{name} {path}: {response and response.status}"
        problems += violations(page, name)
    return problems


@pytest.fixture(autouse=True)
def _warm(page: Page, live_server):
    """The server's first request imports every view (numpy, scipy, the report): on a busy machine that
    alone can pass the log-in's 10 s timeout, so it is made once here, with room."""
    page.goto(f"{live_server.url}/accounts/login/", timeout=60_000)


@pytest.fixture
def case(site, nurse, monitor):
    """A consented patient 30 days after her procedure, with a baseline and a 1-month visit and a query."""
    ConsentVersionFactory(version="3.1", effective_from=datetime.date(2020, 1, 1))
    patient = PatientFactory(site=site, enrolment_date=TODAY - datetime.timedelta(days=40))
    ConsentFactory(patient=patient)
    procedure = ProcedureFactory(patient=patient, procedure_date=TODAY - datetime.timedelta(days=30))
    FollowUpFactory(patient=patient, timepoint="baseline", visit_date=TODAY - datetime.timedelta(days=31))
    visit = FollowUpFactory(patient=patient, timepoint="m1", visit_date=TODAY, vas=Decimal("4.0"))
    query = raise_query(record=visit, field="vas", question="Please check the VAS.", user=monitor)
    return {"patient": patient, "procedure": procedure, "visit": visit, "query": query}


def test_the_nurses_pages_have_no_serious_violation(page: Page, log_in, live_server, case):
    sid = case["patient"].study_id
    log_in("nurse")
    problems = check(
        page,
        live_server.url,
        {
            "worklist": "/patients/worklist/",
            "patient list": "/patients/",
            "patient page": f"/patients/{sid}/",
            "new patient": "/patients/enrol/",
            "consent form": f"/patients/{sid}/consent/",
            "procedure form": f"/procedures/{case['procedure'].pk}/edit/",
            "new visit form": f"/visits/{sid}/m3/",
            "visit form": f"/visits/{sid}/m1/",
            "query (nurse)": f"/audit/queries/{case['query'].pk}/",
            "send a self-report link": "/selfreport/send/",
            "self-report links": "/selfreport/links/",
            "notification preferences": "/selfreport/notifications/",
            "API tokens": "/api/tokens/",
            "password change": "/accounts/password/",
            "user guide": "/help/",
        },
    )
    page.goto(f"{live_server.url}/patients/enrol/")
    page.get_by_role("button", name="Enrol").click()
    expect(page.locator("#error-summary")).to_be_visible()
    problems += violations(page, "new patient with errors")
    page.goto(f"{live_server.url}/visits/{sid}/m3/")
    page.get_by_label("Visit date").fill("")
    page.get_by_role("button", name="Save visit").click()
    expect(page.locator("#error-summary")).to_be_visible()
    problems += violations(page, "visit form with errors")

    second = PatientFactory(site=case["patient"].site)  # not treated yet: the new-procedure form
    ConsentFactory(patient=second)
    problems += check(page, live_server.url, {"new procedure form": f"/procedures/new/{second.study_id}/"})
    page.get_by_role("button", name="Save procedure").click()
    expect(page.locator("#error-summary")).to_be_visible()
    problems += violations(page, "procedure form with errors")
    assert problems == [], "\n" + "\n".join(problems)


def test_the_nurses_pages_on_a_phone_have_no_serious_violation(page: Page, log_in, live_server, case):
    """The header folds into its menu button on a narrow screen; opened, it is checked too."""
    page.set_viewport_size({"width": 390, "height": 844})
    log_in("nurse")
    sid = case["patient"].study_id
    problems = check(page, live_server.url, {"worklist (phone)": "/patients/worklist/"})
    page.get_by_role("button", name="Toggle navigation").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    problems += violations(page, "worklist, menu open (phone)")
    problems += check(
        page,
        live_server.url,
        {"patient page (phone)": f"/patients/{sid}/", "visit form (phone)": f"/visits/{sid}/m3/"},
    )
    assert problems == [], "\n" + "\n".join(problems)


def test_the_investigators_pages_have_no_serious_violation(page: Page, log_in, live_server, demo_cohort, investigator):
    log_in("investigator")
    problems = check(
        page,
        live_server.url,
        {
            "home": "/",
            "dashboard": "/dashboard/",
            "report": "/dashboard/report/",
            "exports": "/exports/",
            "monitoring (investigator)": "/audit/monitoring/",
            "user guide (investigator)": "/help/",
        },
    )
    assert problems == [], "\n" + "\n".join(problems)


def test_the_monitors_pages_have_no_serious_violation(page: Page, log_in, live_server, case):
    sid = case["patient"].study_id
    log_in("monitor")
    problems = check(
        page,
        live_server.url,
        {
            "home": "/",
            "monitoring": "/audit/monitoring/",
            "query": f"/audit/queries/{case['query'].pk}/",
            "raise a query": f"/audit/queries/new/{sid}/",
            "completeness": "/audit/completeness/",
            "quality": "/audit/quality/",
            "patient page (monitor)": f"/patients/{sid}/",
        },
    )
    assert problems == [], "\n" + "\n".join(problems)


def test_the_admins_pages_have_no_serious_violation(page: Page, log_in, live_server, case, admin_user):
    log_in("admin")
    problems = check(
        page,
        live_server.url,
        {
            "consent register": "/audit/consents/",
            "consent versions": "/patients/consent-versions/",
            "new consent version": "/patients/consent-versions/new/",
            "audit trail": "/audit/",
            "patient history": f"/audit/patients/{case['patient'].study_id}/",
            "admin index": "/admin/",
            "users": "/admin/accounts/user/",
            "user": f"/admin/accounts/user/{admin_user.pk}/change/",
            "sites": "/admin/accounts/site/",
            "site": f"/admin/accounts/site/{case['patient'].site.pk}/change/",
            "export log": "/exports/log/",
            "second factor (manage)": "/accounts/two-factor/",
            "user guide (admin)": "/help/",
        },
    )
    assert problems == [], "\n" + "\n".join(problems)


def test_the_log_in_second_factor_and_self_report_pages_have_no_serious_violation(
    page: Page, live_server, case, nurse, admin_user
):
    from selfreport.services import create_link

    page.set_default_timeout(10_000)
    page.goto(f"{live_server.url}/accounts/login/")
    problems = violations(page, "log-in")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_be_visible()
    problems += violations(page, "log-in refused")
    confirmed_totp(admin_user)  # an admin with her app set up: the verify step
    log_in_as(page, live_server.url, "admin")
    expect(page.get_by_role("heading", name="Second factor")).to_be_visible()
    problems += violations(page, "second factor")
    page.get_by_label("Code").fill("000000")
    page.get_by_role("button", name="Verify").click()
    problems += violations(page, "second factor, wrong code")
    page.context.clear_cookies()
    UserFactory(role="admin", username="new_admin", is_staff=True, study_wide=True)  # no app yet: set-up
    log_in_as(page, live_server.url, "new_admin")
    expect(page.get_by_role("heading", name="Set up a second factor")).to_be_visible()
    problems += violations(page, "second factor set-up")
    page.get_by_label("Code from the app").fill("000000")
    page.get_by_role("button", name="Confirm").click()
    problems += violations(page, "second factor set-up, wrong code")
    page.context.clear_cookies()

    patient = PatientFactory(site=nurse.sites.first(), email="rosa@example.org")
    ConsentFactory(patient=patient)
    ProcedureFactory(patient=patient, procedure_date=TODAY - datetime.timedelta(days=30))
    token = create_link(patient=patient, timepoint="m1", user=nurse).new_token()
    problems += check(page, live_server.url, {"self-report form": f"/r/{token}/"})
    assert problems == [], "\n" + "\n".join(problems)


def test_a_forms_errors_are_announced_and_lead_to_their_fields(page: Page, log_in, live_server, nurse):
    """The browser's own accessibility tree is the oracle: what a screen reader would be told."""
    log_in("nurse")
    page.goto(f"{live_server.url}/patients/enrol/")
    page.get_by_role("button", name="Enrol").click()

    summary = page.get_by_role("alert")  # read out on arrival
    expect(summary).to_contain_text("Nothing was saved")
    expect(summary).to_contain_text("Patient full name: This field is required.")
    expect(summary).to_be_focused()  # focus lands on the list of problems, not at the page top
    name = page.get_by_label("Patient full name")
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_have_accessible_description("This field is required.")
    expect(page.get_by_role("group", name="Sex")).to_have_accessible_description("This field is required.")
    summary.get_by_role("link", name="Patient full name: This field is required.").press("Enter")
    expect(name).to_be_focused()  # the summary's link takes her to the field


def outline_of_focused(page: Page) -> tuple[str, float]:
    return page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, parseFloat(s.outlineWidth)]; }"
    )


def test_keyboard_focus_is_visible_on_links_buttons_and_fields(page: Page, log_in, live_server, nurse):
    """Tabbing through the enrol form: every stop draws an outline of at least 2 px (WCAG 2.4.7)."""
    log_in("nurse")
    page.goto(f"{live_server.url}/patients/enrol/")
    seen = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        tag = page.evaluate(
            "() => { const e = document.activeElement; return e.tagName.toLowerCase()"
            " + (e.type ? ':' + e.type : '') + ' #' + e.id + (e.closest('nav') ? ' in header' : ''); }"
        )
        style, width = outline_of_focused(page)
        assert style != "none" and width >= 2, f"focus on {tag} draws no outline ({style} {width}px)"
        seen.add(tag.split(":")[0].split(" ")[0])
    assert {"a", "button", "input", "select"} <= seen  # links, buttons and fields were all reached


def test_pages_in_chinese_have_no_serious_violation(browser: Browser, live_server, settings, case, investigator):
    """The same checks with the browser asking for Simplified Chinese (longer labels, CJK text, lang)."""
    from selfreport.services import create_link

    settings.SELFREPORT_LANGUAGE = "zh-hans"  # a patient's pages take her site's language
    patient = PatientFactory(site=case["patient"].site, email="rosa@example.org")
    ConsentFactory(patient=patient)
    ProcedureFactory(patient=patient, procedure_date=TODAY - datetime.timedelta(days=30))
    token = create_link(patient=patient, timepoint="m1", user=case["query"].raised_by).new_token()
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(10_000)
    sid = case["patient"].study_id
    problems = []
    try:
        page.goto(f"{live_server.url}/accounts/login/")
        expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
        problems += violations(page, "log-in (zh-hans)")
        for username, pages in (
            (
                "nurse",
                {
                    "worklist (zh-hans)": "/patients/worklist/",
                    "patient page (zh-hans)": f"/patients/{sid}/",
                    "visit form (zh-hans)": f"/visits/{sid}/m3/",
                    "new patient (zh-hans)": "/patients/enrol/",
                },
            ),
            ("investigator", {"dashboard (zh-hans)": "/dashboard/", "exports (zh-hans)": "/exports/"}),
        ):
            context.clear_cookies()
            page.goto(f"{live_server.url}/accounts/login/")
            page.locator("#id_username").fill(username)
            page.locator("#id_password").fill(PASSWORD)
            page.locator("form button[type=submit]").last.click()
            expect(page.locator("nav.navbar")).to_contain_text(username)
            problems += check(page, live_server.url, pages)
        context.clear_cookies()
        problems += check(page, live_server.url, {"self-report form (zh-hans)": f"/r/{token}/"})
    finally:
        context.close()
    assert problems == [], "\n" + "\n".join(problems)
