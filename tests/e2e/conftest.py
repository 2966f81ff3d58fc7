import pytest
from playwright.sync_api import Page, expect

from tests.factories import PASSWORD


@pytest.fixture
def log_in(page: Page, live_server):
    """log_in("nurse"): through the real log-in form, as a person would."""

    def go(username: str) -> None:
        page.set_default_timeout(10_000)
        page.goto(f"{live_server.url}/accounts/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("nav")).to_contain_text(username)

    return go
