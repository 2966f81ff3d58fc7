"""Links: random, stored hashed, one visit, refused with one neutral message when wrong, expired, revoked or used."""

import datetime
import hashlib
import re
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from audit.models import AuditEvent
from patients.models import Consent
from patients.services import withdraw_consent
from selfreport import services
from selfreport.models import LinkToken, SelfReport, SelfReportLink, TokenFailure
from tests.selfreport.conftest import TODAY, make_patient

pytestmark = pytest.mark.django_db
NEUTRAL = "This link cannot be used"


def answers(**extra):
    data = {"vas": "6.5", **{f"odi_q{i}": "2" for i in range(1, 11)}, "drug_1": "morphine", "dose_1": "30"}
    data.update(extra)
    return data


@pytest.fixture
def link_and_token(patient, nurse):
    link = services.create_link(patient=patient, timepoint="m1", user=nurse)
    return link, link.new_token()


def test_the_token_is_random_and_only_its_sha256_is_stored(link_and_token):
    link, raw = link_and_token
    assert len(raw) >= 43 and re.fullmatch(r"[A-Za-z0-9_-]+", raw)
    stored = LinkToken.objects.get(link=link)
    assert stored.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    # The raw token is in no stored row: not the link, not its token row, not the trail.
    rows = [*SelfReportLink.objects.values_list(), *LinkToken.objects.values_list(), *AuditEvent.objects.values_list()]
    assert raw not in repr(rows)
    # Two links never share a token; the token is not the link's id.
    other = make_patient(link.patient.site, full_name="Ann Other")
    other_raw = services.create_link(patient=other, timepoint="m1", user=None).new_token()
    assert other_raw != raw and str(link.pk) != raw


def test_the_page_greets_by_first_name_and_shows_only_the_visit(client, link_and_token):
    link, raw = link_and_token
    response = client.get(f"/r/{raw}/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "Hello Rosa" in body and "1 month" in body
    patient = link.patient
    for secret in ("Tester", "Maria", patient.mrn, patient.study_id, patient.email):
        assert secret not in body
    assert "no-store" in response["Cache-Control"]
    assert "script-src" in response["Content-Security-Policy"]
    assert "PLACEHOLDER" in body  # the shipped ODI wording says it is not the licensed text
    link.refresh_from_db()
    assert link.opened_at is not None


def test_guessed_expired_revoked_and_used_tokens_get_the_same_neutral_answer(client, link_and_token, nurse, site):
    _link, raw = link_and_token
    guessed = client.get("/r/" + "A" * 43 + "/")
    # Expired: a second patient's link whose window closed yesterday.
    old = make_patient(site, full_name="Old Timer")
    expired = services.create_link(patient=old, timepoint="m1", user=nurse)
    expired_raw = expired.new_token()
    SelfReportLink.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    expired_answer = client.get(f"/r/{expired_raw}/")
    # Used: submitted once, then opened and posted again.
    assert client.post(f"/r/{raw}/", answers()).status_code == 200
    reused = client.get(f"/r/{raw}/")
    reposted = client.post(f"/r/{raw}/", answers(vas="1"))
    # Revoked.
    third = make_patient(site, full_name="Third Person")
    revoked = services.create_link(patient=third, timepoint="m1", user=nurse)
    revoked_raw = revoked.new_token()
    services.revoke_link(link=revoked, user=nurse, reason="Patient prefers the telephone")
    revoked_answer = client.get(f"/r/{revoked_raw}/")

    answers_ = [guessed, expired_answer, reused, reposted, revoked_answer]
    assert [r.status_code for r in answers_] == [404] * 5
    bodies = {r.content.decode() for r in answers_}
    assert len(bodies) == 1, "every refusal must look the same"
    assert NEUTRAL in bodies.pop()
    assert SelfReport.objects.count() == 1 and SelfReport.objects.get().vas == Decimal("6.5")


def test_a_second_submission_is_refused_by_the_service_too(link_and_token):
    link, _raw = link_and_token
    services.submit_report(link=link, vas=Decimal("3"), odi=[1] * 10, medications=[])
    with pytest.raises(ValidationError):
        services.submit_report(link=link, vas=Decimal("4"), odi=[1] * 10, medications=[])
    assert SelfReport.objects.filter(link=link).count() == 1


def test_failures_are_rate_limited_per_address(client, link_and_token, settings):
    settings.SELFREPORT_MAX_TOKEN_FAILURES = 3
    _link, raw = link_and_token
    for n in range(3):
        assert client.get(f"/r/guess{n:040d}/").status_code == 404
    # Now even the right token is refused from this address, with the same neutral text.
    blocked = client.get(f"/r/{raw}/")
    assert blocked.status_code == 429 and NEUTRAL in blocked.content.decode()
    # Another address is not affected.
    assert client.get(f"/r/{raw}/", REMOTE_ADDR="10.0.0.9").status_code == 200
    assert TokenFailure.objects.filter(address="127.0.0.1").count() == 3


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("withdrawn", "withdrew"),
        ("no_contact", "no further contact"),
        ("no_future_contact", "future contact"),
        ("deceased", "died"),
    ],
)
def test_a_withdrawn_deceased_or_no_contact_patient_is_never_sent_a_link(site, nurse, case, message):
    patient = make_patient(site, scope_future_contact=case != "no_future_contact")
    consent = patient.consents.get()
    if case == "withdrawn":
        withdraw_consent(consent=consent, scope=Consent.WithdrawalScope.NO_NEW_DATA, reason="asked", user=nurse)
    elif case == "no_contact":
        withdraw_consent(consent=consent, scope=Consent.WithdrawalScope.NO_CONTACT, reason="asked", user=nurse)
    elif case == "deceased":
        type(patient).objects.filter(pk=patient.pk).update(death_date=TODAY - datetime.timedelta(days=1))
        patient.refresh_from_db()
    with pytest.raises(ValidationError) as refused:
        services.create_link(patient=patient, timepoint="m1", user=nurse)
    assert message in str(refused.value)
    assert not SelfReportLink.objects.exists()


def test_a_link_made_before_a_withdrawal_stops_working(client, link_and_token, nurse):
    link, raw = link_and_token
    withdraw_consent(
        consent=link.patient.consents.get(), scope=Consent.WithdrawalScope.NO_CONTACT, reason="asked", user=nurse
    )
    assert client.get(f"/r/{raw}/").status_code == 404


def test_the_send_page_refuses_a_withdrawn_patient_with_the_reason(client, site, nurse):
    patient = make_patient(site)
    withdraw_consent(
        consent=patient.consents.get(), scope=Consent.WithdrawalScope.NO_NEW_DATA, reason="asked", user=nurse
    )
    client.force_login(nurse)
    response = client.post("/selfreport/send/", {"study_id": patient.study_id, "timepoint": "m1", "send_email": "on"})
    assert response.status_code == 400
    assert "withdrew consent" in response.content.decode()
    assert not SelfReportLink.objects.exists()


def test_a_link_outside_the_window_is_refused_naming_the_window(site, nurse):
    patient = make_patient(site, days_since_procedure=10)  # 1 month opens on day 21
    with pytest.raises(ValidationError) as refused:
        services.create_link(patient=patient, timepoint="m1", user=nurse)
    opens = (TODAY - datetime.timedelta(days=10) + datetime.timedelta(days=21)).isoformat()
    assert opens in str(refused.value)


def test_the_page_works_without_javascript_as_one_form_and_names_bad_fields(client, link_and_token):
    _link, raw = link_and_token
    response = client.post(f"/r/{raw}/", answers(vas="10.5", drug_2="oxycodone"))
    body = response.content.decode()
    assert response.status_code == 400
    assert "Pain now" in body and "less than or equal to 10" in body
    assert "Give the daily dose of this opioid" in body
    assert not SelfReport.objects.exists()


def test_a_chinese_site_patient_gets_the_page_in_chinese(client, settings, site, nurse):
    settings.SELFREPORT_SITE_LANGUAGES = {"PSP": "zh-hans"}
    patient = make_patient(site, full_name="Wei Zhang")
    raw = services.create_link(patient=patient, timepoint="m1", user=nurse).new_token()
    body = client.get(f"/r/{raw}/").content.decode()
    assert "Wei，您好" in body and "提交我的回答" in body and "跳过此部分" in body
    assert "占位文本" in body and "行走" in body  # the Chinese placeholder ODI wording
    assert '<html lang="zh-hans">' in body


def test_the_nurse_sees_her_sites_waiting_links_and_revokes_one_with_a_reason(
    client, link_and_token, nurse, other_nurse
):
    link, raw = link_and_token
    client.force_login(other_nurse)
    assert f'<th scope="row">{link.pk}</th>' not in client.get("/selfreport/links/").content.decode()
    client.force_login(nurse)
    page = client.get("/selfreport/links/").content.decode()
    assert f'<th scope="row">{link.pk}</th>' in page and link.patient.study_id in page
    client.post(f"/selfreport/links/{link.pk}/revoke/", {"reason": ""})
    link.refresh_from_db()
    assert link.revoked_at is None  # no reason, no revocation
    client.post(f"/selfreport/links/{link.pk}/revoke/", {"reason": "Patient asked for a call instead"})
    link.refresh_from_db()
    assert link.revoked_by == nurse and link.revoke_reason == "Patient asked for a call instead"
    assert "No links are waiting" in client.get("/selfreport/links/").content.decode()
    client.logout()
    assert client.get(f"/r/{raw}/").status_code == 404
    event = AuditEvent.objects.get(model="selfreport.SelfReportLink", action="update")
    assert event.reason == "Patient asked for a call instead" and event.user == nurse


def test_the_schedule_prunes_failed_token_rows_older_than_a_day(client):
    from selfreport import scheduler

    client.get("/r/" + "B" * 43 + "/")
    TokenFailure.objects.create(address="10.1.1.1", at=timezone.now() - datetime.timedelta(days=2))
    scheduler.run_once()
    assert list(TokenFailure.objects.values_list("address", flat=True)) == ["127.0.0.1"]
