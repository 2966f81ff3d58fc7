"""The sacrum picture with the keyboard alone (issue 16): Tab reaches each segment, Space toggles it,
the focus is seen, each segment is a named checkbox kept in sync with the level checkboxes, and the
levels chosen this way are the ones saved."""

import datetime
import re

import pytest
from playwright.sync_api import Page, expect

from procedures.models import Procedure
from tests.factories import ConsentFactory, PatientFactory

pytestmark = pytest.mark.django_db(transaction=True)
TODAY = datetime.date.today()


@pytest.fixture
def consented(site):
    patient = PatientFactory(site=site, full_name="Kim Keys", enrolment_date=TODAY - datetime.timedelta(days=5))
    ConsentFactory(patient=patient)
    return patient


def fill_the_rest(page: Page) -> None:
    for label in ("Procedure date", "Admission date", "Discharge date"):
        page.get_by_label(label).fill(TODAY.isoformat())
    page.get_by_label("Operator code").fill("IR7")
    page.get_by_label("Approach").select_option("interpedicular")
    page.get_by_label("Image guidance").select_option("ct")
    page.get_by_label("Anaesthesia").select_option("local")
    page.get_by_label("Needle gauge").select_option("13")
    page.get_by_label("Cement volume injected (mL)").fill("5")
    page.get_by_label("Procedure duration (min)").fill("40")
    page.get_by_role("group", name="Technical success").get_by_label("Yes", exact=True).check()


def test_the_levels_are_chosen_on_the_picture_with_tab_and_space(page: Page, log_in, live_server, nurse, consented):
    log_in("nurse")
    page.goto(f"{live_server.url}/procedures/new/{consented.study_id}/")
    fill_the_rest(page)
    page.get_by_label("Number of needles").fill("2")  # the field just before the picture

    page.keyboard.press("Tab")
    focused = page.locator(":focus")
    expect(focused).to_have_attribute("data-level", "L5")
    expect(focused).to_have_attribute("role", "checkbox")
    expect(focused).to_have_attribute("aria-checked", "false")
    # the focus is seen: the focused segment is outlined (registry.css), an unfocused one is not
    assert focused.evaluate("el => getComputedStyle(el).outlineStyle") != "none"
    assert page.locator('.sacrum-map [data-level="S3"]').evaluate("el => getComputedStyle(el).outlineStyle") == "none"

    page.keyboard.press("Tab")  # S1
    page.keyboard.press("Space")
    page.keyboard.press("Tab")  # S2
    page.keyboard.press("Space")
    page.keyboard.press("Tab")  # S3: on, then off again
    page.keyboard.press("Space")
    page.keyboard.press("Space")

    # the segments are checkboxes with a name per level, as a screen reader reads them
    expect(page.get_by_role("checkbox", name="S1 on the picture")).to_be_checked()
    expect(page.get_by_role("checkbox", name="S2 on the picture")).to_be_checked()
    expect(page.get_by_role("checkbox", name="S3 on the picture")).not_to_be_checked()
    expect(page.get_by_role("checkbox", name="Coccyx on the picture")).not_to_be_checked()
    # kept in sync with the form's own checkboxes, which are what is sent
    expect(page.get_by_label("S1", exact=True)).to_be_checked()
    expect(page.get_by_label("S2", exact=True)).to_be_checked()
    expect(page.get_by_label("S3", exact=True)).not_to_be_checked()
    expect(page.locator('.sacrum-map [data-level="S1"]')).to_have_class(re.compile("selected"))
    # and the other way round: ticking a box updates the picture's state
    page.get_by_label("L5", exact=True).check()
    expect(page.get_by_role("checkbox", name="L5 on the picture")).to_have_attribute("aria-checked", "true")
    page.get_by_label("L5", exact=True).uncheck()
    expect(page.get_by_role("checkbox", name="L5 on the picture")).to_have_attribute("aria-checked", "false")

    page.get_by_role("button", name="Save procedure").click()
    expect(page.locator("#levels-1")).to_have_text("S1–S2")
    assert Procedure.objects.get(patient=consented).levels_treated == "S1|S2"
