import datetime

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.utils import timezone

pytestmark = pytest.mark.django_db


def test_a_session_expires_after_thirty_idle_minutes_and_each_request_renews_it(client, nurse):
    client.force_login(nurse)
    key = client.session.session_key
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() + datetime.timedelta(minutes=5))
    client.get("/patients/")
    remaining = Session.objects.get(session_key=key).expire_date - timezone.now()
    assert settings.SESSION_COOKIE_AGE == 30 * 60
    assert datetime.timedelta(minutes=29) < remaining <= datetime.timedelta(minutes=30)  # pushed forward by the request


def test_an_expired_session_sends_the_nurse_back_to_the_log_in_page(client, nurse):
    client.force_login(nurse)
    session = client.session
    session.set_expiry(-1)  # as if the idle time had run out
    session.save()
    response = client.get("/patients/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
