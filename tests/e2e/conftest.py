import time

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import confirmed_totp
from tests.factories import PASSWORD


def totp_code(device) -> str:
    """The code an authenticator app shows now for `device`, computed from its key (RFC 6238).

    A code is accepted once: if this step's code was already used (a second
    log-in within 30 s), the next step's code is typed, which the device's
    tolerance of one step accepts.
    """
    from django_otp.oath import hotp

    device.refresh_from_db()
    now_t = int((time.time() - device.t0) // device.step) + device.drift
    t = max(now_t, device.last_t + 1)
    if t > now_t + device.tolerance:
        time.sleep(device.step - (time.time() - device.t0) % device.step + 0.1)
        return totp_code(device)
    return f"{hotp(device.bin_key, t, device.digits):0{device.digits}d}"


@pytest.fixture
def log_in(page: Page, live_server):
    """log_in("nurse"): through the real log-in form, as a person would."""

    def go(username: str) -> None:
        from accounts.models import User

        user = User.objects.get(username=username)
        device = confirmed_totp(user) if user.requires_second_factor else None  # an admin has enrolled her app
        page.set_default_timeout(10_000)
        page.goto(f"{live_server.url}/accounts/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        if device is not None:
            page.get_by_label("Code").fill(totp_code(device))
            page.get_by_role("button", name="Verify").click()
        expect(page.get_by_role("navigation", name="Main")).to_contain_text(username)

    return go
