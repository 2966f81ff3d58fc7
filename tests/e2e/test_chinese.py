"""Issue 16: a new user switches to Chinese with the header switcher and walks the nurse's,
the investigator's and the admin's pages in a real browser (headless Chromium); no English
may be left on them but proper nouns, codes and units (ALLOWED).

The oracle is the text a reader sees: the page's rendered text (innerText), its title, the
options of its drop-downs and the names screen readers announce (aria-label, placeholder,
title, alt). Data the test itself entered (names, usernames, study IDs, MRNs, codes) is
taken out first. A failure lists, per owner (the app, hence the engineer, that owns the
page's strings; the header and footer are the project's) and page, each English word
with a line it occurs in. Screenshots of every page go to bench/out/chinese/.
"""

import datetime
import functools
import os
import re
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import confirmed_totp
from tests.e2e.conftest import totp_code
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
SHOTS = Path(__file__).resolve().parents[2] / "bench" / "out" / "chinese"

# Proper nouns, abbreviations, codes and units that stay as they are in Chinese text.
ALLOWED = set(
    # the registry's name, clinical scores and units
    "PSP VAS ODI MME ECOG CIRSE Oswestry Denis Kaplan Meier mg mL ml mGy cGy mcg kg cm mm min CT MRI PET SD IQR CI "
    # file formats, standards and technical names
    "CSV PDF HTML JSON XML ODM CDISC REDCap SPSS Stata SAS zip API ID IP QR UTC ISO SHA TOTP URL CRF README "
    "CDC PCA PMMA PALACOS Gy SVG "
    # Roman numerals of codes (Denis zones I-III), key names, statistics' names and symbols
    "II III IV Tab Wilcoxon Greenwood dz log YYYY "
    # software and products named in help texts; a language named in itself in the switcher
    "NumPy SciPy FreeOTP Aegis Google Microsoft Authenticator Python curl English".split()
)
WORD = re.compile(r"[A-Za-z][A-Za-z'’]+")
# Not language: addresses, hashes, study IDs and MRNs, paths and file names, identifiers and options
# of commands, language codes, the browser's user agent as the trail records it.
CODE = [
    re.compile(pattern)
    for pattern in (
        r"Mozilla/5\.0 .*?(?=\t|$)",
        r"(https?|otpauth)://\S+",
        r"\S+@\S+",
        r"\b[0-9a-f]{12,}\b",
        r"\b[A-Z]{1,5}-\d{3,}\b|\bMRN\d+\b",
        r"[A-Za-z0-9_.-]*/[A-Za-z0-9_./-]+",
        r"\b[A-Za-z0-9]+\.(py|json|csv|pdf|zip|sav|xml)\b",
        r"\b[A-Za-z0-9]*_[A-Za-z0-9_]*\b",
        r"(?<!\w)--[a-z-]+",
        r"\b(zh-hans|zh_Hans|en)\b",
    )
]


def visible_text(page: Page) -> tuple[str, list[str]]:
    """What the reader sees and hears: the rendered text, the title, options and accessible names;
    and the text of code elements (a command, a header to type), which is not language."""
    return page.evaluate(
        """() => {
        const code = [...document.querySelectorAll("code, pre, kbd, samp")].map(e => e.innerText);
        const parts = [document.title, document.body.innerText];
        for (const o of document.querySelectorAll("option")) parts.push(o.textContent);
        for (const e of document.querySelectorAll("[aria-label], [placeholder], [title], img[alt], input[type=submit]")) {
            for (const a of ["aria-label", "placeholder", "title", "alt", "value"]) {
                if (e.hasAttribute(a) && (a !== "value" || e.type === "submit")) parts.push(e.getAttribute(a));
            }
        }
        return [parts.join("\\n"), code];
    }"""
    )


def header_text(page: Page) -> str:
    """The project's frame (header and footer): its strings are i18n-core's, whatever the page."""
    return page.evaluate(
        """() => [...document.querySelectorAll("body > nav, body > footer, body > a.visually-hidden-focusable")]
        .map(e => e.innerText + "\\n" + [...e.querySelectorAll("[aria-label], option")]
            .map(x => x.getAttribute("aria-label") || x.textContent).join("\\n")).join("\\n")"""
    )


class Walk:
    """Visits pages, keeps a screenshot of each and collects the English left on them."""

    def __init__(self, page: Page, url: str, data: list[str]) -> None:
        self.page, self.url = page, url
        # What the test entered: removed before looking for words (longest first).
        self.data = sorted(filter(None, data), key=len, reverse=True)
        self.found: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
        SHOTS.mkdir(parents=True, exist_ok=True)

    def english(self, text: str) -> dict[str, str]:
        """Each English word of `text` not allowed, with the first line it occurs in."""
        words: dict[str, str] = {}
        for line in text.splitlines():
            clean = line
            for value in self.data:  # also as CSS shows it (the admin's text-transform: uppercase)
                clean = re.sub(re.escape(value), " ", clean, flags=re.IGNORECASE)
            for code in CODE:
                clean = code.sub(" ", clean)
            for word in WORD.findall(clean):
                if word not in ALLOWED and word.strip("'’") not in ALLOWED:
                    words.setdefault(word, line.strip())
        return words

    def check(self, role: str, name: str, owner: str, path: str | None = None, lands: str | None = None) -> None:
        """The page now shown (or `path`, opened first; it must not redirect elsewhere than `lands`):
        its English words, by owner, and a screenshot."""
        if path is not None:
            response = self.page.goto(self.url + path)
            assert response is not None and response.status == 200, f"{name} {path}: {response and response.status}"
            shown = self.page.url.removeprefix(self.url)
            assert shown == (lands or path), f"{name}: {path} ended on {shown}"
        self.page.wait_for_load_state("networkidle")
        expect(self.page.locator("html")).to_have_attribute("lang", "zh-hans")
        shown = self.page.url.removeprefix(self.url)
        self.page.screenshot(path=SHOTS / f"{role}-{re.sub(r'[^a-z0-9]+', '-', name.lower())}.png", full_page=True)
        # The project's frame (base.html), on pages that have it: a standalone page's footer is the page's own.
        frame = self.english(header_text(self.page)) if self.page.locator("#language-switcher").count() else {}
        if frame:
            self.found[("i18n-core (header, footer)", f"{role}: {name} ({shown})")].update(frame)
        text, code = visible_text(self.page)
        for snippet in sorted(filter(str.strip, code), key=len, reverse=True):  # an empty one would match everywhere
            text = text.replace(snippet, " ")
        body = {w: line for w, line in self.english(text).items() if w not in frame}
        if body:
            self.found[(owner, f"{role}: {name} ({shown})")].update(body)

    def report(self) -> str:
        lines = []
        for (owner, page), words in sorted(self.found.items()):
            lines.append(f"{owner} | {page}: {', '.join(sorted(words))}")
            for word, line in sorted(words.items())[:8]:
                where = ", ".join(written_in(line)) or "?"
                lines.append(f"      {word!r} in: {line[:90]}   [source: {where}]")
        return "\n".join(lines)


CLINICAL, ANALYSIS, TRAIL, CORE = "i18n-clinical", "i18n-analysis", "trail-and-numbers", "i18n-core"
ROOT = Path(__file__).resolve().parents[2]
ENGLISH_RUN = re.compile(r"[A-Za-z][A-Za-z'’]*(?:[ ,-]+[A-Za-z][A-Za-z'’]*)*")


@functools.cache
def sources() -> dict[str, str]:
    """The app's source files (not tests, catalogues, migrations or vendored code), by path from the root."""
    skip = {".git", ".venv", "tests", "bench", "locale", "migrations", "vendor", "staticfiles", "node_modules", "media"}
    out = {}
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip and not d.startswith(".")]
        for name in files:
            if name.endswith((".py", ".html", ".js", ".txt")):
                path = Path(folder, name)
                out[path.relative_to(ROOT).as_posix()] = path.read_text(errors="replace").lower()
    return out


def written_in(line: str) -> list[str]:
    """The source files that hold the longest English run of `line` (in any case: CSS may upper-case
    it): where the string to mark or translate lives."""
    runs = sorted(ENGLISH_RUN.findall(line), key=len, reverse=True)
    if not runs or len(runs[0]) < 4:
        return []
    run = runs[0].lower()
    return [path for path, text in sources().items() if run in text][:3]


@pytest.fixture
def cohort(site):
    """A consented patient 30 days after her procedure with two visits, and one enrolled, consented, untreated."""
    site.name = "上海市第六人民医院"
    site.save()
    ConsentVersionFactory(version="3.1", effective_from=datetime.date(2020, 1, 1))
    treated = PatientFactory(site=site, full_name="王芳", enrolment_date=TODAY - datetime.timedelta(days=40))
    ConsentFactory(patient=treated, obtained_by="RN01")
    procedure = ProcedureFactory(patient=treated, procedure_date=TODAY - datetime.timedelta(days=30))
    FollowUpFactory(patient=treated, timepoint="baseline", visit_date=TODAY - datetime.timedelta(days=31))
    FollowUpFactory(patient=treated, timepoint="m1", visit_date=TODAY, vas=Decimal("4.0"))
    untreated = PatientFactory(site=site, full_name="李娜", enrolment_date=TODAY - datetime.timedelta(days=2))
    ConsentFactory(patient=untreated, obtained_by="RN01")
    return {"treated": treated, "procedure": procedure, "untreated": untreated}


def data_of(cohort, *users) -> list[str]:
    patients = [cohort["treated"], cohort["untreated"]]
    values = [p.study_id for p in patients] + [p.mrn for p in patients] + [p.full_name for p in patients]
    values += [u.username for u in users] + ["IR01", "RN01", "3.1", cohort["treated"].site.code]
    return values


def switch_in_header(page: Page) -> None:
    """The header's language switcher, with the keyboard: focus the list, choose, press Enter."""
    page.locator("#language-select").focus()
    page.locator("#language-select").select_option("zh-hans")
    page.locator("#language-select").press("Enter")  # the plain form submits; a click on the button does too
    if page.locator("html").get_attribute("lang") != "zh-hans":
        page.locator("#language-switcher button").click()
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")


def log_in(page: Page, url: str, user, *, code: bool = False) -> None:
    """Through the real form, located by field ids: the labels are in whatever language is shown."""
    device = confirmed_totp(user) if code else None  # an admin has enrolled her app
    page.set_default_timeout(30_000)  # two shared cores: a page may take a while
    page.goto(f"{url}/accounts/login/")
    page.locator("#id_username").fill(user.username)
    page.locator("#id_password").fill(PASSWORD)
    page.locator("main button[type=submit]").click()
    if device is not None:
        page.locator("#id_code").fill(totp_code(device))
        page.locator("main button[type=submit]").click()
    expect(page).not_to_have_url(re.compile(r"/accounts/(login|two-factor)/"))


def test_a_new_nurse_switches_to_chinese_and_finds_no_english(page: Page, live_server, site, cohort):
    nurse = UserFactory(username="nurse_wang", role="nurse", first_name="", last_name="")
    nurse.sites.add(site)
    walk = Walk(page, live_server.url, data_of(cohort, nurse))
    sid, new_sid = cohort["treated"].study_id, cohort["untreated"].study_id
    log_in(page, live_server.url, nurse)  # her browser asks for English: the pages start in English
    expect(page.locator("html")).to_have_attribute("lang", "en")
    switch_in_header(page)
    nurse.refresh_from_db()
    assert nurse.language == "zh-hans"  # stored on her account, not only in this browser

    walk.check("nurse", "worklist", CLINICAL)
    for name, path, owner in (
        ("patient list", "/patients/", CLINICAL),
        ("patient page", f"/patients/{sid}/", CLINICAL),
        ("consent form", f"/patients/{new_sid}/consent/", CLINICAL),
        ("new procedure form", f"/procedures/new/{new_sid}/", CLINICAL),
        ("procedure form", f"/procedures/{cohort['procedure'].pk}/edit/", CLINICAL),
        ("visit form", f"/visits/{sid}/m1/", CLINICAL),
        ("new visit form", f"/visits/{sid}/m3/", CLINICAL),
        ("self-report link", "/selfreport/send/", ANALYSIS),
        ("password change", "/accounts/password/", CORE),
    ):
        walk.check("nurse", name, owner, path)
    walk.check("nurse", "user guide", CORE, "/help/", lands="/help/nurse/")

    # Messages: a form refused (the error summary and each field's error), then a change saved.
    page.goto(f"{live_server.url}/patients/enrol/")
    page.locator("main button[type=submit]").click()
    expect(page.locator("#error-summary")).to_be_visible()
    walk.check("nurse", "new patient with errors", CLINICAL)
    page.goto(f"{live_server.url}/visits/{sid}/m3/")
    page.locator("#id_visit_date").fill("")
    page.locator("main button[type=submit]").last.click()
    expect(page.locator("#error-summary")).to_be_visible()
    walk.check("nurse", "visit form with errors", CLINICAL)
    page.goto(f"{live_server.url}/patients/{sid}/edit/")
    page.locator("#id_ecog").select_option("2")
    page.locator("#id_reason").fill("门诊复查 ECOG")
    page.locator("main button[type=submit]").last.click()
    expect(page.locator(".alert-success, [role=status]").first).to_be_visible()
    walk.check("nurse", "patient saved", CLINICAL)

    assert not walk.found, "English left on the nurse's pages (owner | page: words):\n" + walk.report()


def test_an_investigator_reads_the_analysis_in_chinese(page: Page, live_server, site, cohort):
    investigator = UserFactory(username="dr_li", role="investigator", first_name="", last_name="")
    investigator.sites.add(site)
    walk = Walk(page, live_server.url, data_of(cohort, investigator))
    log_in(page, live_server.url, investigator)
    switch_in_header(page)
    walk.check("investigator", "dashboard", ANALYSIS)
    for name, path, owner in (
        ("report", "/dashboard/report/", ANALYSIS),
        ("exports", "/exports/", ANALYSIS),
        ("monitoring", "/audit/monitoring/", ANALYSIS),
        ("API tokens", "/api/tokens/", ANALYSIS),
    ):
        walk.check("investigator", name, owner, path)
    walk.check("investigator", "user guide", CORE, "/help/", lands="/help/investigator/")
    # Printable: on paper (A4) the guide is the text alone, without the header, the tabs or the button.
    page.emulate_media(media="print")
    for frame in ("body > nav", ".guide nav", "#print-guide", "body > footer"):
        expect(page.locator(frame)).to_be_hidden()
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    page.pdf(path=SHOTS / "investigator-user-guide.pdf", format="A4")
    page.emulate_media(media="screen")
    assert not walk.found, "English left on the investigator's pages (owner | page: words):\n" + walk.report()


def test_an_admin_switches_on_the_log_in_page_and_reads_the_register_and_trail(page: Page, live_server, site, cohort):
    admin = UserFactory(username="admin_zhao", role="admin", first_name="", last_name="")
    admin.sites.add(site)
    device = confirmed_totp(admin)  # she enrolled her authenticator app at her first log-in
    walk = Walk(page, live_server.url, data_of(cohort, admin))
    sid = cohort["treated"].study_id
    page.set_default_timeout(30_000)
    page.goto(f"{live_server.url}/accounts/login/")
    switch_in_header(page)  # before logging in: the switcher's cookie
    walk.check("admin", "log-in page", CORE)
    page.locator("#id_username").fill(admin.username)
    page.locator("#id_password").fill(PASSWORD)
    page.locator("main button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/accounts/two-factor/verify/"))
    walk.check("admin", "second factor", CORE)
    page.locator("#id_code").fill(totp_code(device))
    page.locator("main button[type=submit]").click()
    expect(page).not_to_have_url(re.compile(r"/accounts/(login|two-factor)/"))
    for name, path, owner in (
        ("consent register", "/audit/consents/", ANALYSIS),
        ("consent versions", "/patients/consent-versions/", CLINICAL),
        ("audit trail", "/audit/", TRAIL),
        ("audit trail, one field", f"/audit/?study_id={sid}&field=vas", TRAIL),
        ("patient history", f"/audit/patients/{sid}/", TRAIL),
        ("export log", "/exports/log/", ANALYSIS),
        # The admin's own words are Django's (translated); the app and model names are each app's.
        ("Django admin", "/admin/", "each app (apps.py and Meta verbose names; django-axes)"),
        ("Django admin: users", "/admin/accounts/user/", f"{TRAIL} (audit/admin_accounts.py) and each app"),
        ("second factor", "/accounts/two-factor/", CORE),
        ("guide: admin", "/help/admin/", CORE),
        ("guide: nurse", "/help/nurse/", CORE),
        ("guide: investigator", "/help/investigator/", CORE),
        ("guide: monitor", "/help/monitor/", CORE),
    ):
        walk.check("admin", name, owner, path)
    assert not walk.found, "English left on the admin's pages (owner | page: words):\n" + walk.report()
