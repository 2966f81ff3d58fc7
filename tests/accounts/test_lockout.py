"""Log-in guessing: a username is locked after N failures from anywhere, an address after M for any names.

Limits are lowered for the tests (3 per username, 5 per address); the real
defaults are 5 and 30 (registry/settings.py).
"""

import datetime
import html

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.utils import timezone
from django.utils.formats import date_format

from audit.models import AuditEvent
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def limits(settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_ADDRESS_FAILURE_LIMIT = 5


def log_in(username, password, ip="10.0.0.1", **headers):
    client = Client(REMOTE_ADDR=ip, **headers)
    return client.post("/accounts/login/", {"username": username, "password": password})


def succeeded(response):
    return response.status_code == 302 and response["Location"] == "/"


def locked(response):
    return response.status_code == 429 and "Log-in temporarily locked" in response.content.decode()


def test_one_username_guessed_from_many_addresses_is_locked(nurse):
    for n in range(2):
        assert log_in("nurse", "wrong", ip=f"10.0.1.{n}").status_code == 200
    assert locked(log_in("nurse", "wrong", ip="10.0.1.2"))  # the third failure locks
    response = log_in("nurse", PASSWORD, ip="10.0.1.99")  # the right password, from a fresh address
    assert locked(response)
    # she can try again after the 30-minute cool-off counted from the last failure (this request)
    page = response.content.decode()
    later = timezone.localtime() + datetime.timedelta(minutes=30)
    shown = (date_format(later + datetime.timedelta(minutes=d), "DATETIME_FORMAT") for d in (-1, 0, 1))
    assert any(html.escape(s) in page for s in shown)  # in the reader's locale (Django's formats)
    assert succeeded(log_in("investigator_x", "irrelevant", ip="10.0.1.99")) is False  # unknown name: plain failure
    UserFactory(username="colleague")
    assert succeeded(log_in("colleague", PASSWORD, ip="10.0.1.1"))  # the addresses themselves are not locked


def test_many_usernames_from_one_address_lock_the_address(nurse):
    for n in range(4):
        assert log_in(f"guess{n}", "wrong", ip="10.0.2.1").status_code == 200
    assert locked(log_in("guess4", "wrong", ip="10.0.2.1"))  # the fifth failure locks
    assert locked(log_in("nurse", PASSWORD, ip="10.0.2.1"))
    assert succeeded(log_in("nurse", PASSWORD, ip="10.0.2.2"))  # the account is not locked


def test_logging_in_to_your_own_account_does_not_reset_a_colleagues_counter(nurse):
    insider = UserFactory(username="insider")
    assert insider
    for _ in range(2):
        assert log_in("nurse", "guess", ip="10.0.3.1").status_code == 200
        assert succeeded(log_in("insider", PASSWORD, ip="10.0.3.1"))
    assert locked(log_in("nurse", "guess", ip="10.0.3.1"))  # third failure on her account, her logins between
    assert locked(log_in("nurse", PASSWORD, ip="10.0.3.2"))


def test_her_own_success_clears_her_own_typos(nurse):
    for _ in range(2):
        log_in("nurse", "typo")
    assert succeeded(log_in("nurse", PASSWORD))
    for _ in range(2):
        log_in("nurse", "typo")
    assert succeeded(log_in("nurse", PASSWORD))  # 4 failures in all, never 3 since her last success


def test_x_forwarded_for_is_ignored_unless_proxies_are_trusted(nurse, settings):
    for n in range(5):  # every guess claims another address: all come from 10.0.4.1
        log_in(f"guess{n}", "wrong", ip="10.0.4.1", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
    assert locked(log_in("nurse", PASSWORD, ip="10.0.4.1", HTTP_X_FORWARDED_FOR="192.0.2.200"))

    settings.TRUSTED_PROXY_COUNT = 1  # one proxy (10.0.9.9) appends the address it saw
    for n in range(5):  # a client at 198.51.100.7 guessing, writing a forged address first
        log_in(f"guess{n}", "wrong", ip="10.0.9.9", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}, 198.51.100.7")
    assert locked(log_in("nurse", PASSWORD, ip="10.0.9.9", HTTP_X_FORWARDED_FOR="198.51.100.7"))
    assert succeeded(log_in("nurse", PASSWORD, ip="10.0.9.9", HTTP_X_FORWARDED_FOR="198.51.100.8"))
    assert set(AccessAttempt.objects.filter(ip_address__startswith="19").values_list("ip_address", flat=True)) == {
        "198.51.100.7"
    }


def test_an_admin_unlocks_with_a_reason_and_it_is_audited(client, admin_user, nurse):
    for n in range(3):
        log_in("nurse", "wrong", ip=f"10.0.5.{n}")
    assert locked(log_in("nurse", PASSWORD, ip="10.0.5.9"))
    client.force_login(admin_user)
    changelist = "/admin/accounts/user/"
    action = {"action": "unlock_user", "_selected_action": [nurse.pk]}
    page = client.post(changelist, action)
    assert page.status_code == 200 and "Reason for change" in page.content.decode()
    page = client.post(changelist, {**action, "confirm": "yes", "reason_for_change": ""})
    assert "Give the reason" in page.content.decode() and AccessAttempt.objects.filter(username="nurse").exists()
    response = client.post(changelist, {**action, "confirm": "yes", "reason_for_change": "Phoned; identity checked"})
    assert response.status_code == 302
    assert not AccessAttempt.objects.filter(username="nurse").exists()
    event = AuditEvent.objects.get(model="accounts.User", object_pk=str(nurse.pk))
    assert (event.user, event.reason, event.changes) == (
        admin_user,
        "Phoned; identity checked",
        {"locked_out": [True, False]},
    )
    assert succeeded(log_in("nurse", PASSWORD, ip="10.0.5.9"))


def test_an_admin_unlocks_an_address_from_the_lockout_list(client, admin_user, nurse):
    for n in range(5):
        log_in(f"guess{n}", "wrong", ip="10.0.6.1")
    client.force_login(admin_user)
    ids = list(AccessAttempt.objects.filter(ip_address="10.0.6.1").values_list("pk", flat=True))
    response = client.post(
        "/admin/axes/accessattempt/",
        {"action": "unlock_attempt", "_selected_action": ids, "confirm": "yes", "reason_for_change": "Ward PC"},
    )
    assert response.status_code == 302 and not AccessAttempt.objects.exists()
    events = AuditEvent.objects.filter(reason="Ward PC", user=admin_user)
    assert sorted(e.extra["unlocked"]["username"] for e in events) == [f"guess{n}" for n in range(5)]
    assert succeeded(log_in("nurse", PASSWORD, ip="10.0.6.1"))


def test_a_site_admin_does_not_see_lockouts_of_other_sites(client, site, other_nurse, nurse):
    log_in("other_nurse", "wrong", ip="10.0.7.1")
    log_in("nurse", "wrong", ip="10.0.7.1")
    site_admin = UserFactory(username="siteadmin", role="admin")
    site_admin.sites.add(site)
    client.force_login(site_admin)
    listed = {a.username for a in client.get("/admin/axes/accessattempt/").context["cl"].result_list}
    assert listed == {"nurse"}
