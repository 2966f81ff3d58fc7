"""The reader's language: the stored choice of a signed-in user, else the switcher's cookie, else the browser."""

import datetime
import re

import pytest
from django import forms
from django.conf import settings
from django.utils import translation

from registry.forms import date_input

pytestmark = pytest.mark.django_db


def html_lang(response) -> str:
    return re.search(r'<html lang="([^"]+)"', response.content.decode()).group(1)


def test_the_log_in_page_follows_the_browser_and_says_so_in_html_lang(client):
    assert html_lang(client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9")) == "zh-hans"
    response = client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="en-US")
    assert html_lang(response) == "en" and response["Content-Language"] == "en"


def test_an_anonymous_reader_switches_with_the_cookie_and_back_to_the_browser(client):
    response = client.post("/accounts/language/", {"language": "zh-hans", "next": "/accounts/login/"})
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert client.cookies[settings.LANGUAGE_COOKIE_NAME].value == "zh-hans"
    assert html_lang(client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="en")) == "zh-hans"
    client.post("/accounts/language/", {"language": "", "next": "/accounts/login/"})
    assert html_lang(client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="en")) == "en"


def test_a_signed_in_users_choice_is_stored_on_her_and_wins_over_the_browser(client, nurse):
    client.force_login(nurse)
    response = client.post("/accounts/language/", {"language": "zh-hans", "next": "/help/nurse/"})
    assert response["Location"] == "/help/nurse/"
    nurse.refresh_from_db()
    assert nurse.language == "zh-hans"
    client.cookies.pop(settings.LANGUAGE_COOKIE_NAME)  # another browser: only the account remembers
    page = client.get("/help/nurse/", HTTP_ACCEPT_LANGUAGE="en-GB,en")
    assert html_lang(page) == "zh-hans"
    assert '<option value="zh-hans" lang="zh-hans" selected>' in page.content.decode()


def test_blank_means_follow_the_browser_again(client, nurse):
    nurse.language = "zh-hans"
    nurse.save()
    client.force_login(nurse)
    client.post("/accounts/language/", {"language": "", "next": "/help/nurse/"})
    nurse.refresh_from_db()
    assert nurse.language == ""
    assert html_lang(client.get("/help/nurse/", HTTP_ACCEPT_LANGUAGE="en")) == "en"
    assert html_lang(client.get("/help/nurse/", HTTP_ACCEPT_LANGUAGE="zh-CN")) == "zh-hans"


def test_the_change_of_language_goes_into_the_trail(client, nurse):
    from audit.models import AuditEvent

    client.force_login(nurse)
    before = AuditEvent.objects.count()
    client.post("/accounts/language/", {"language": "zh-hans"})
    event = AuditEvent.objects.order_by("pk").last()
    assert AuditEvent.objects.count() == before + 1
    assert event.changes["language"] == ["", "zh-hans"]


def test_an_unknown_language_is_a_400_naming_the_field(client, nurse):
    client.force_login(nurse)
    response = client.post("/accounts/language/", {"language": "fr"})
    assert response.status_code == 400 and b"language" in response.content
    nurse.refresh_from_db()
    assert nurse.language == ""


def test_the_switcher_is_reachable_before_the_second_factor_is_set_up(client, admin_user):
    """An admin sent to enrolment can still read that page in her language."""
    from django.test import Client

    plain = Client()
    plain.force_login(admin_user)  # password only: the gate sends every page to enrolment
    assert plain.get("/help/admin/").status_code == 302
    response = plain.post("/accounts/language/", {"language": "zh-hans", "next": "/accounts/two-factor/enrol/"})
    assert response["Location"] == "/accounts/two-factor/enrol/"
    admin_user.refresh_from_db()
    assert admin_user.language == "zh-hans"


class _DateForm(forms.Form):
    day = forms.DateField(widget=date_input())


def test_date_inputs_stay_iso_in_chinese():
    """<input type=date> needs ISO whatever the page's language; typed ISO is read back."""
    with translation.override("zh-hans"):
        form = _DateForm(initial={"day": datetime.date(2026, 3, 9)})
        assert 'value="2026-03-09"' in str(form["day"])
        bound = _DateForm({"day": "2026-03-09"})
        assert bound.is_valid() and bound.cleaned_data["day"] == datetime.date(2026, 3, 9)


def test_numbers_and_dates_on_pages_follow_the_locale():
    """Django's formats: the same date reads differently per language; decimals keep the dot in both."""
    from django.utils import formats

    day = datetime.date(2026, 3, 9)
    with translation.override("zh-hans"):
        assert formats.date_format(day) == "2026年3月9日"
        assert formats.localize(7.25) == "7.25"
    with translation.override("en"):
        assert formats.date_format(day) == "March 9, 2026"
        assert formats.localize(7.25) == "7.25"


def test_the_log_in_page_reads_in_chinese(client):
    page = client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert '<h1 class="h3 mb-3">登录</h1>' in page
    assert "用户名" in page  # Django's own label of the username field, from Django's catalogue
    assert "Log in" not in page and "Skip to content" not in page


def test_form_kit_messages_follow_the_language():
    from registry.errors import StaleEditError
    from registry.fields import not_in_future

    with translation.override("zh-hans"):
        assert "已被他人修改" in str(StaleEditError("S1-001"))
        try:
            not_in_future(datetime.date(2999, 1, 1))
        except Exception as exc:  # ValidationError
            assert exc.messages == ["日期不能晚于今天。"]


@pytest.mark.parametrize(
    ("user_fixture", "role", "heading"),
    [
        ("nurse", "nurse", "研究护士"),
        ("investigator", "investigator", "研究者"),
        ("monitor", "monitor", "监查员"),
        ("admin_user", "admin", "管理员"),
    ],
)
def test_help_opens_the_readers_own_guide_in_her_language(client, request, user_fixture, role, heading):
    user = request.getfixturevalue(user_fixture)
    user.language = "zh-hans"
    user.save()
    client.force_login(user)
    response = client.get("/help/")
    assert response.status_code == 302 and response["Location"] == f"/help/{role}/"
    page = client.get(response["Location"]).content.decode()
    assert f"用户指南：{heading}" in page
    assert 'href="/help/">帮助</a>' in page  # the header's link
    assert 'media="print"' in page  # printable: the print stylesheet hides the navigation
    for other in ("nurse", "investigator", "monitor", "admin"):
        assert f'href="/help/{other}/"' in page  # every role's guide is one click away


def test_the_english_guide_names_the_buttons_the_pages_show(client, nurse):
    client.force_login(nurse)
    page = client.get("/help/nurse/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "User guide: Research nurse" in page
    for label in ("Worklist", "Record visit", "Enrol a patient"):
        assert label in page


def test_an_unknown_guide_is_a_404(client, nurse):
    client.force_login(nurse)
    assert client.get("/help/surgeon/").status_code == 404
