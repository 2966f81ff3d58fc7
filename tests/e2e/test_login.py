import re
from urllib.parse import urlparse

import pytest
from playwright.sync_api import expect

from tests.factories import PASSWORD


@pytest.mark.django_db(transaction=True)
def test_a_user_logs_in_and_the_page_uses_only_local_assets(page, live_server, nurse):
    hosts = set()
    page.on("request", lambda request: hosts.add(urlparse(request.url).hostname))
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill("nurse")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("navigation", name="Main")).to_contain_text("nurse")
    assert page.evaluate("getComputedStyle(document.body).getPropertyValue('--bs-body-font-family')") != ""
    assert hosts <= {"localhost", "127.0.0.1"}


@pytest.mark.django_db(transaction=True)
def test_a_wrong_password_is_refused_with_a_message(page, live_server, nurse):
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill("nurse")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text(re.compile("correct username and password"))
