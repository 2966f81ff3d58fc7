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


CLINICAL_ADMIN_PAGES = [
    "patients/patient",
    "patients/consent",
    "procedures/procedure",
    "procedures/leakage",
    "procedures/complication",
    "outcomes/followup",
    "outcomes/medication",
]


@pytest.fixture
def two_site_case(site, other_site):
    """One complete case at each site: patient, consent, procedure with a leakage and a complication, visit, opioid."""
    from tests.factories import (
        ComplicationFactory,
        ConsentFactory,
        FollowUpFactory,
        LeakageFactory,
        MedicationFactory,
        PatientFactory,
        ProcedureFactory,
    )

    cases = {}
    for s in (site, other_site):
        patient = PatientFactory(site=s)
        ConsentFactory(patient=patient)
        procedure = ProcedureFactory(patient=patient, leakage=True)
        LeakageFactory(procedure=procedure)
        ComplicationFactory(procedure=procedure)
        MedicationFactory(followup=FollowUpFactory(patient=patient))
        cases[s.code] = patient
    return cases


@pytest.mark.parametrize("page", CLINICAL_ADMIN_PAGES)
def test_the_admin_writes_no_clinical_data_and_shows_only_the_admins_sites(client, site, two_site_case, page):
    """One write path: the admin is read-only for clinical data (no add, change or delete, whatever is
    posted), and a site admin sees neither the list rows nor the record pages of another site."""
    from django.apps import apps

    from tests.factories import UserFactory

    site_admin = UserFactory(role="admin")
    site_admin.sites.set([site])
    client.force_login(site_admin)
    model = apps.get_model(*page.split("/"))
    mine = model.objects.filter(pk__in=_pks(model, two_site_case[site.code]))
    theirs = model.objects.filter(pk__in=_pks(model, two_site_case["ZZ"]))
    listing = client.get(f"/admin/{page}/")
    assert listing.status_code == 200
    assert {o.pk for o in listing.context["cl"].result_list} == set(mine.values_list("pk", flat=True))
    assert client.get(f"/admin/{page}/{theirs.get().pk}/change/").status_code in (302, 404)
    before = list(model.objects.order_by("pk").values())
    assert client.get(f"/admin/{page}/add/").status_code == 403
    assert client.post(f"/admin/{page}/add/", {"reason_for_change": "x"}).status_code == 403
    record = mine.get()
    change = client.get(f"/admin/{page}/{record.pk}/change/")
    assert change.status_code == 200 and 'name="_save"' not in change.content.decode()
    assert client.post(f"/admin/{page}/{record.pk}/change/", {"reason_for_change": "x"}).status_code == 403
    assert client.post(f"/admin/{page}/{record.pk}/delete/", {"post": "yes"}).status_code == 403
    assert list(model.objects.order_by("pk").values()) == before


def _pks(model, patient) -> list[int]:
    """The rows of `model` that belong to `patient`, found through the patient's own relations."""
    label = model._meta.label
    return {
        "patients.Patient": [patient.pk],
        "patients.Consent": list(patient.consents.values_list("pk", flat=True)),
        "procedures.Procedure": list(patient.procedures.values_list("pk", flat=True)),
        "procedures.Leakage": [lk.pk for p in patient.procedures.all() for lk in p.leakages.all()],
        "procedures.Complication": [c.pk for p in patient.procedures.all() for c in p.complications.all()],
        "outcomes.FollowUp": list(patient.followups.values_list("pk", flat=True)),
        "outcomes.Medication": [m.pk for f in patient.followups.all() for m in f.medications.all()],
    }[label]


def test_the_admin_links_each_record_to_the_registry_page_where_it_is_edited(client, admin_user, two_site_case):
    client.force_login(admin_user)
    visit = two_site_case["PSP"].followups.get()
    page = client.get(f"/admin/outcomes/followup/{visit.pk}/change/").content.decode()
    assert f'href="/visits/{visit.patient.study_id}/{visit.timepoint}/"' in page


def test_the_trail_in_the_admin_shows_a_site_admin_her_sites_only(client, site, two_site_case):
    from audit.models import AuditEvent
    from audit.services import record_change
    from tests.factories import UserFactory

    for code, patient in two_site_case.items():
        record_change(action="view", instance=patient, user=None, changes={}, study_id=patient.study_id, site_code=code)
    site_admin = UserFactory(role="admin")
    site_admin.sites.set([site])
    client.force_login(site_admin)
    rows = client.get("/admin/audit/auditevent/").context["cl"].result_list
    assert {e.site_code for e in rows} == {site.code}
    assert AuditEvent.objects.filter(site_code="ZZ").exists()
