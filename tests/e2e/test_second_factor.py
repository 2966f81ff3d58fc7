"""An admin's first log-in in a real browser: password, set up the app from the page, recovery codes, then in.

The code is computed from the key the page shows (tests/accounts/totp.py), as
the phone app would; the second log-in goes through the verify step.
"""

import pytest
from playwright.sync_api import expect

from tests.accounts.totp import key_from_uri, totp
from tests.factories import PASSWORD


@pytest.mark.django_db(transaction=True)
def test_an_admin_enrols_an_authenticator_at_first_log_in_then_logs_in_with_a_code(
    page, log_in, live_server, admin_user
):
    page.set_default_timeout(10_000)
    page.goto(f"{live_server.url}/admin/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    expect(page.get_by_role("heading", name="Set up a second factor")).to_be_visible()
    expect(page.get_by_role("img", name="QR code to scan with the app")).to_be_visible()
    uri = page.get_by_label("Set-up link", exact=True).input_value()
    page.get_by_label("Code from the app").fill(totp(key_from_uri(uri)))
    page.keyboard.press("Enter")  # keyboard only: the form submits from the field

    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    expect(page.get_by_role("list", name="Recovery codes").get_by_role("listitem")).to_have_count(10)
    page.get_by_role("link", name="Continue").click()
    expect(page).to_have_url(f"{live_server.url}/admin/")
    expect(page.get_by_role("link", name="Users", exact=True)).to_be_visible()

    page.get_by_role("button", name="Log out").click()
    log_in("admin")  # password, then the verify step with the next code of the same device
    page.goto(f"{live_server.url}/admin/accounts/user/")
    expect(page.get_by_role("heading", name="Select user to change")).to_be_visible()
