"""The user and site admin as a site admin would try to misuse it: nothing past her role and sites.

A site admin (role admin, site PSP, not study-wide, not superuser) manages the
nurses and investigators of PSP only. Every tampered POST below is checked
against the database afterwards, not against the page.
"""

import pytest
from django.contrib.auth.models import Group, Permission

from accounts.models import User
from audit.models import AuditEvent
from tests.factories import PASSWORD, SiteFactory, UserFactory

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "Unguessable-ward-5-pass"


@pytest.fixture
def site_admin(site):
    user = UserFactory(username="siteadmin", role="admin")
    user.sites.add(site)
    return user


@pytest.fixture
def psp_nurse(site):
    user = UserFactory(username="psp_nurse", role="nurse", first_name="Ana")
    user.sites.add(site)
    return user


@pytest.fixture
def superuser(db):
    return UserFactory(username="root", role="admin", is_superuser=True, is_staff=True)


@pytest.fixture
def as_site_admin(client, site_admin):
    client.force_login(site_admin)
    return client


def change_data(user, **overrides):
    """The change form as the site admin's browser would send it (every field she is shown)."""
    data = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "role": user.role,
        "sites": [s.pk for s in user.sites.all()],
        "is_active": "on" if user.is_active else "",
        "reason_for_change": "",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v not in ("", None)}


def state(user):
    user.refresh_from_db()
    return (
        user.role,
        user.is_superuser,
        user.is_staff,
        user.study_wide,
        user.is_active,
        sorted(user.sites.values_list("code", flat=True)),
        list(user.groups.all()),
        list(user.user_permissions.all()),
        user.password,
    )


def test_tampered_fields_are_ignored_and_disallowed_values_refused(as_site_admin, psp_nurse, other_site):
    group = Group.objects.create(name="everything")
    perm = Permission.objects.get(codename="change_site")
    url = f"/admin/accounts/user/{psp_nurse.pk}/change/"
    tampered = {
        "is_superuser": "on",
        "is_staff": "on",
        "study_wide": "on",
        "groups": [group.pk],
        "user_permissions": [perm.pk],
        "must_change_password": "",
    }
    before = state(psp_nurse)

    # role admin and another site's access: refused with a message naming the field
    response = as_site_admin.post(
        url, change_data(psp_nurse, role="admin", sites=[other_site.pk], reason_for_change="promote", **tampered)
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) >= {"role", "sites"}
    assert state(psp_nurse) == before

    # a valid edit carrying the forbidden flags: saved, flags not set
    response = as_site_admin.post(url, change_data(psp_nurse, first_name="Anna", reason_for_change="typo", **tampered))
    assert response.status_code == 302
    psp_nurse.refresh_from_db()
    assert psp_nurse.first_name == "Anna"
    assert state(psp_nurse)[:8] == (before[0], False, False, False, True, ["PSP"], [], [])


def test_she_cannot_open_or_change_herself_other_admins_other_sites_or_the_superuser(
    as_site_admin, site_admin, superuser, other_nurse, site, other_site
):
    shared = UserFactory(username="shared_nurse", role="nurse")
    shared.sites.add(site, other_site)  # also works at ZZ: her password would open ZZ's data
    colleague = UserFactory(username="psp_admin2", role="admin")
    colleague.sites.add(site)
    for target in (site_admin, superuser, other_nurse, shared, colleague):
        before = state(target)
        change = as_site_admin.post(
            f"/admin/accounts/user/{target.pk}/change/",
            change_data(target, is_superuser="on", study_wide="on", reason_for_change="x"),
        )
        password = as_site_admin.post(
            f"/admin/accounts/user/{target.pk}/password/",
            {
                "password1": NEW_PASSWORD,
                "password2": NEW_PASSWORD,
                "reason_for_change": "x",
                "set_usable_password": "true",
            },
        )
        assert change.status_code in (302, 403, 404) and password.status_code in (403, 404), target.username
        assert change.status_code != 302 or "/change/" not in change["Location"]
        assert state(target) == before, target.username
        target.refresh_from_db()
        assert target.check_password(PASSWORD) and not target.check_password(NEW_PASSWORD)
    assert not AuditEvent.objects.filter(model="accounts.User").exists()


def test_the_user_list_shows_only_nurses_and_investigators_of_her_sites(as_site_admin, psp_nurse, other_nurse, site):
    investigator = UserFactory(username="psp_inv", role="investigator")
    investigator.sites.add(site)
    UserFactory(username="root", is_superuser=True, role="admin").sites.add(site)
    response = as_site_admin.get("/admin/accounts/user/")
    listed = {u.username for u in response.context["cl"].result_list}
    assert listed == {"psp_nurse", "psp_inv"}
    add_form = as_site_admin.get("/admin/accounts/user/add/").context["adminform"].form
    assert [s.code for s in add_form.fields["sites"].queryset] == ["PSP"]
    assert {v for v, _ in add_form.fields["role"].choices if v} == {"nurse", "investigator"}
    assert not {"is_superuser", "is_staff", "study_wide", "groups", "user_permissions"} & set(add_form.fields)


def test_she_creates_a_nurse_for_her_site_who_must_change_the_password(as_site_admin, site_admin, site, other_site):
    base = {
        "username": "new_nurse",
        "usable_password": "true",
        "password1": NEW_PASSWORD,
        "password2": NEW_PASSWORD,
        "role": "nurse",
        "sites": [site.pk],
    }
    for refused in (
        {},  # no reason
        {"reason_for_change": "x", "role": "admin"},
        {"reason_for_change": "x", "sites": [other_site.pk]},
        {"reason_for_change": "x", "sites": []},
    ):
        response = as_site_admin.post("/admin/accounts/user/add/", {**base, **refused})
        assert response.status_code == 200, refused
        assert not User.objects.filter(username="new_nurse").exists()
    response = as_site_admin.post(
        "/admin/accounts/user/add/",
        {**base, "reason_for_change": "Joined the ward", "is_superuser": "on", "study_wide": "on"},
    )
    assert response.status_code == 302
    nurse = User.objects.get(username="new_nurse")
    assert (nurse.role, nurse.is_superuser, nurse.study_wide, nurse.must_change_password) == (
        "nurse",
        False,
        False,
        True,
    )
    assert list(nurse.sites.values_list("code", flat=True)) == ["PSP"]
    event = AuditEvent.objects.get(model="accounts.User", object_pk=str(nurse.pk))
    assert (event.action, event.user, event.reason) == ("create", site_admin, "Joined the ward")
    assert event.changes["role"] == [None, "nurse"] and event.changes["sites"] == [None, ["PSP"]]
    assert NEW_PASSWORD not in str(event.changes) and nurse.password not in str(event.changes)


def test_she_deactivates_a_nurse_with_a_reason(as_site_admin, site_admin, psp_nurse):
    url = f"/admin/accounts/user/{psp_nurse.pk}/change/"
    response = as_site_admin.post(url, change_data(psp_nurse, is_active=""))
    assert response.status_code == 200 and "reason_for_change" in response.context["adminform"].form.errors
    psp_nurse.refresh_from_db()
    assert psp_nurse.is_active
    response = as_site_admin.post(url, change_data(psp_nurse, is_active="", reason_for_change="Left the hospital"))
    assert response.status_code == 302
    psp_nurse.refresh_from_db()
    assert not psp_nurse.is_active
    event = AuditEvent.objects.get(model="accounts.User", object_pk=str(psp_nurse.pk))
    assert event.changes == {"is_active": [True, False]}
    assert (event.user, event.reason, event.site_code) == (site_admin, "Left the hospital", "PSP")


def test_a_password_she_sets_is_audited_and_must_be_changed_at_next_log_in(as_site_admin, site_admin, psp_nurse):
    from django.test import Client

    url = f"/admin/accounts/user/{psp_nurse.pk}/password/"
    form = {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "set_usable_password": "true"}
    assert as_site_admin.post(url, form).status_code == 200  # no reason: refused
    psp_nurse.refresh_from_db()
    assert psp_nurse.check_password(PASSWORD)
    response = as_site_admin.post(url, {**form, "reason_for_change": "Forgot her password"})
    assert response.status_code == 302
    psp_nurse.refresh_from_db()
    assert psp_nurse.check_password(NEW_PASSWORD) and psp_nurse.must_change_password
    event = AuditEvent.objects.get(model="accounts.User", object_pk=str(psp_nurse.pk))
    assert event.changes["must_change_password"] == [False, True] and "password" in event.changes
    assert (event.user, event.reason) == (site_admin, "Forgot her password")

    nurse = Client()
    response = nurse.post("/accounts/login/", {"username": "psp_nurse", "password": NEW_PASSWORD})
    assert response.status_code == 302
    for page in ("/", "/patients/", "/dashboard/"):
        response = nurse.get(page)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/password/?next=")
    response = nurse.post(
        "/accounts/password/",
        {
            "old_password": NEW_PASSWORD,
            "new_password1": "Only-she-knows-this-1",
            "new_password2": "Only-she-knows-this-1",
        },
    )
    assert response.status_code == 302
    psp_nurse.refresh_from_db()
    assert not psp_nurse.must_change_password and psp_nurse.check_password("Only-she-knows-this-1")
    assert nurse.get("/patients/").status_code == 200
    own = AuditEvent.objects.filter(model="accounts.User", user=psp_nurse).get()
    assert own.changes["must_change_password"] == [True, False]


def test_sites_are_read_only_for_her_and_only_hers_are_listed(as_site_admin, site, other_site):
    listed = {s.code for s in as_site_admin.get("/admin/accounts/site/").context["cl"].result_list}
    assert listed == {"PSP"}
    assert as_site_admin.get(f"/admin/accounts/site/{site.pk}/change/").status_code == 200  # view only
    response = as_site_admin.post(f"/admin/accounts/site/{site.pk}/change/", {"code": "PSP", "name": "Mine now"})
    assert response.status_code == 403
    assert as_site_admin.post("/admin/accounts/site/add/", {"code": "NEW", "name": "New"}).status_code == 403
    site.refresh_from_db()
    assert site.name != "Mine now"


def test_only_a_superuser_grants_study_wide_and_the_admin_role_and_it_is_audited(client, superuser, psp_nurse, site):
    client.force_login(superuser)
    url = f"/admin/accounts/user/{psp_nurse.pk}/change/"
    form = client.get(url).context["adminform"].form
    assert {"is_superuser", "is_staff", "study_wide", "groups", "user_permissions"} <= set(form.fields)
    data = change_data(psp_nurse, role="admin", study_wide="on", date_joined_0="2026-01-01", date_joined_1="00:00")
    data["date_joined_0"], data["date_joined_1"] = "2026-01-01", "00:00:00"
    response = client.post(url, {**data, "reason_for_change": "Becomes the study coordinator"})
    assert response.status_code == 302, response.context["adminform"].form.errors
    psp_nurse.refresh_from_db()
    assert psp_nurse.role == "admin" and psp_nurse.study_wide
    event = AuditEvent.objects.get(model="accounts.User", object_pk=str(psp_nurse.pk))
    assert event.changes["role"] == ["nurse", "admin"] and event.changes["study_wide"] == [False, True]
    assert event.user == superuser


def test_a_study_wide_admin_manages_nurses_of_every_site_but_grants_nothing(client, site, other_nurse):
    boss = UserFactory(username="study_admin", role="admin", study_wide=True)
    client.force_login(boss)
    listed = {u.username for u in client.get("/admin/accounts/user/").context["cl"].result_list}
    assert "other_nurse" in listed and "study_admin" not in listed
    response = client.post(
        f"/admin/accounts/user/{other_nurse.pk}/change/",
        change_data(other_nurse, role="admin", reason_for_change="x"),
    )
    assert response.status_code == 200 and "role" in response.context["adminform"].form.errors
    other_nurse.refresh_from_db()
    assert other_nurse.role == "nurse"
    assert client.get(f"/admin/accounts/site/{SiteFactory(code='NEW').pk}/change/").status_code == 200


def test_users_are_never_deleted_through_the_admin(as_site_admin, psp_nurse):
    response = as_site_admin.post(f"/admin/accounts/user/{psp_nurse.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert User.objects.filter(pk=psp_nurse.pk).exists()
