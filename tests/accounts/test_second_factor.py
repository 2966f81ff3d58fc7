"""The second factor: required for admins and the Django admin, optional for others, audited.

Codes are computed by tests/accounts/totp.py (RFC 6238 written out), as a
phone app would, from the key in the otpauth:// URI the enrolment page shows.
"""

import html
import re
import time

import pytest
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditEvent
from tests.accounts.totp import hotp, key_from_uri, totp
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def test_the_code_helper_matches_the_rfc_6238_test_vectors():
    assert totp(b"12345678901234567890", at=59, digits=8) == "94287082"
    assert totp(b"12345678901234567890", at=1111111109, digits=8) == "07081804"


def password_login(username):
    client = Client()
    response = client.post("/accounts/login/", {"username": username, "password": PASSWORD})
    assert response.status_code == 302
    return client


def enrol(client):
    page = client.get("/accounts/two-factor/enrol/").content.decode()
    uri = html.unescape(re.search(r'value="(otpauth://[^"]+)"', page).group(1))
    return page, uri, key_from_uri(uri)


@pytest.fixture
def no_throttle(settings):
    """django-otp refuses any code for 1 s after a wrong one (doubling each time); these tests retry at once."""
    settings.OTP_TOTP_THROTTLE_FACTOR = 0


def test_an_admin_must_enrol_before_any_page_then_gets_recovery_codes(admin_user, no_throttle):
    client = password_login("admin")
    for page in ("/", "/patients/", "/audit/", "/admin/", "/admin/accounts/user/"):
        response = client.get(page)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/two-factor/enrol/"), page

    page, uri, key = enrol(client)
    assert uri.startswith("otpauth://totp/") and "issuer=PSP" in uri and "<svg" in page
    assert 'for="id_code"' in page  # the code field has its label
    assert (
        client.post(
            "/accounts/two-factor/enrol/", {"code": "000000" if totp(key) != "000000" else "111111"}
        ).status_code
        == 200
    )
    assert not TOTPDevice.objects.filter(user=admin_user, confirmed=True).exists()

    response = client.post("/accounts/two-factor/enrol/", {"code": totp(key), "next": "/admin/"})
    codes = re.findall(r"<li>([a-z0-9]{8})</li>", response.content.decode())
    assert len(codes) == 10 and len(set(codes)) == 10
    assert client.get("/admin/accounts/user/").status_code == 200
    event = AuditEvent.objects.get(model="accounts.User", object_pk=str(admin_user.pk))
    assert event.changes == {"second_factor": [None, "authenticator app"]} and event.user == admin_user


def test_at_the_next_log_in_the_code_is_asked_after_the_password(admin_user, no_throttle):
    client = password_login("admin")
    _, _, key = enrol(client)
    client.post("/accounts/two-factor/enrol/", {"code": totp(key)})

    client = password_login("admin")
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/two-factor/verify/")
    response = client.post("/accounts/two-factor/verify/", {"code": "12345", "next": "/admin/"})
    assert response.status_code == 200 and "not right" in response.content.decode()
    assert AuditEvent.objects.filter(action="login_failed", username="admin").exists()
    # the code already used at enrolment is refused (no replay); the next one is accepted
    assert client.post("/accounts/two-factor/verify/", {"code": totp(key)}).status_code == 200
    step = int(time.time() // 30) + 1
    response = client.post("/accounts/two-factor/verify/", {"code": hotp(key, step), "next": "/admin/"})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_after_a_wrong_code_even_the_right_one_is_refused_for_a_while(admin_user):
    client = password_login("admin")
    _, _, key = enrol(client)
    client.post("/accounts/two-factor/enrol/", {"code": totp(key)})
    client = password_login("admin")
    client.post("/accounts/two-factor/verify/", {"code": "99999999"})
    right = hotp(key, int(time.time() // 30) + 1)
    assert client.post("/accounts/two-factor/verify/", {"code": right}).status_code == 200
    assert client.get("/admin/").status_code == 302


def test_a_recovery_code_works_once(admin_user):
    client = password_login("admin")
    _, _, key = enrol(client)
    page = client.post("/accounts/two-factor/enrol/", {"code": totp(key)}).content.decode()
    code = re.findall(r"<li>([a-z0-9]{8})</li>", page)[0]

    first = password_login("admin")
    assert first.post("/accounts/two-factor/verify/", {"code": code}).status_code == 302
    assert first.get("/admin/").status_code == 200
    second = password_login("admin")
    assert second.post("/accounts/two-factor/verify/", {"code": code}).status_code == 200
    assert second.get("/admin/").status_code == 302


def test_regenerating_recovery_codes_replaces_them_and_is_audited(client, admin_user):
    client.force_login(admin_user)
    page = client.get("/accounts/two-factor/").content.decode()
    assert "0 unused recovery codes" in page
    page = client.post("/accounts/two-factor/", {"action": "regenerate"}).content.decode()
    first = re.findall(r"<li>([a-z0-9]{8})</li>", page)
    page = client.post("/accounts/two-factor/", {"action": "regenerate"}).content.decode()
    second = re.findall(r"<li>([a-z0-9]{8})</li>", page)
    assert len(first) == len(second) == 10 and not set(first) & set(second)
    assert AuditEvent.objects.filter(changes__has_key="recovery_codes", user=admin_user).count() == 2


def test_the_second_factor_is_optional_for_a_nurse_and_asked_once_enrolled(nurse):
    client = password_login("nurse")
    assert client.get("/patients/").status_code == 200
    _, _, key = enrol(client)
    client.post("/accounts/two-factor/enrol/", {"code": totp(key)})
    assert client.get("/patients/").status_code == 200

    client = password_login("nurse")
    response = client.get("/patients/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/two-factor/verify/")


def test_removal_needs_the_password_and_is_audited(nurse):
    client = password_login("nurse")
    _, _, key = enrol(client)
    client.post("/accounts/two-factor/enrol/", {"code": totp(key)})
    response = client.post("/accounts/two-factor/remove/", {"password": "not-it"})
    assert response.status_code == 400 and TOTPDevice.objects.filter(user=nurse).exists()
    response = client.post("/accounts/two-factor/remove/", {"password": PASSWORD})
    assert response.status_code == 302 and not TOTPDevice.objects.filter(user=nurse).exists()
    event = AuditEvent.objects.filter(model="accounts.User", object_pk=str(nurse.pk)).first()
    assert event.changes == {"second_factor": ["authenticator app", None]}
    assert password_login("nurse").get("/patients/").status_code == 200  # no code asked any more


def test_an_admin_who_removes_hers_must_enrol_again(client, admin_user):
    client.force_login(admin_user)
    client.post("/accounts/two-factor/remove/", {"password": PASSWORD})
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/two-factor/enrol/")


def test_an_admin_removes_a_lost_second_factor_with_a_reason(client, admin_user, nurse):
    TOTPDevice.objects.create(user=nurse, name="phone", confirmed=True)
    client.force_login(admin_user)
    action = {"action": "remove_second_factor", "_selected_action": [nurse.pk], "confirm": "yes"}
    client.post("/admin/accounts/user/", {**action, "reason_for_change": ""})
    assert TOTPDevice.objects.filter(user=nurse).exists()
    response = client.post("/admin/accounts/user/", {**action, "reason_for_change": "Phone lost"})
    assert response.status_code == 302 and not TOTPDevice.objects.filter(user=nurse).exists()
    event = AuditEvent.objects.get(model="accounts.User", object_pk=str(nurse.pk))
    assert (event.user, event.reason) == (admin_user, "Phone lost")


def test_a_superuser_without_the_admin_role_also_needs_it(db):
    UserFactory(username="root", role="nurse", is_superuser=True, is_staff=True)
    client = password_login("root")
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/two-factor/enrol/")
