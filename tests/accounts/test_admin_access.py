import pytest

pytestmark = pytest.mark.django_db


def test_a_registry_admin_uses_the_django_admin_by_role(client, site):
    from tests.factories import UserFactory

    admin = UserFactory(username="boss", role="admin")  # not is_staff, no ticked permissions
    client.force_login(admin)
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/patients/patient/").status_code == 200
    assert client.get("/admin/accounts/user/add/").status_code == 200


def test_the_audit_trail_is_read_only_in_the_admin(client, admin_user):
    client.force_login(admin_user)
    assert client.get("/admin/audit/auditevent/").status_code == 200
    assert client.get("/admin/audit/auditevent/add/").status_code == 403


@pytest.mark.parametrize("role", ["nurse", "investigator"])
def test_other_roles_do_not_get_the_django_admin(client, role):
    from tests.factories import UserFactory

    client.force_login(UserFactory(role=role))
    response = client.get("/admin/patients/patient/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_an_admin_edit_of_clinical_data_needs_a_reason_and_is_audited(client, admin_user):
    from audit.models import AuditEvent
    from tests.factories import PatientFactory

    patient = PatientFactory(ecog=1)
    client.force_login(admin_user)
    url = f"/admin/patients/patient/{patient.pk}/change/"
    form = client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None}
    data.update(
        {
            "site": patient.site_id,
            "ecog": 2,
            "reason_for_change": "",
            "consents-TOTAL_FORMS": 0,
            "consents-INITIAL_FORMS": 0,
        }
    )
    data = {k: str(v) if isinstance(v, bool) else v for k, v in data.items()}
    data["denis_zones"] = patient.denis_zones.split("|")
    response = client.post(url, {k: v for k, v in data.items() if k != "reason_for_change"})
    assert response.status_code == 200 and "Give the reason for this change" in response.content.decode()
    data["reason_for_change"] = "ECOG re-assessed"
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    event = AuditEvent.objects.get(action="update", model="patients.Patient")
    assert event.changes["ecog"] == [1, 2] and event.reason == "ECOG re-assessed"
