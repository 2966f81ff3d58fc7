import csv
import datetime
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from audit.models import AuditEvent
from outcomes.cohort import filtered_patients
from patients.models import Consent, ConsentVersion, Patient
from patients.services import record_consent
from tests.factories import ConsentFactory, ConsentVersionFactory, PatientFactory
from tests.pdfs import real_pdf

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4 signed consent of a patient\n%%EOF\n"
BLANK_PDF = real_pdf("blank consent form v3.0")


@pytest.fixture
def consent(site, nurse):
    """A consent recorded through the service, with its signed PDF."""
    patient = PatientFactory(site=site)
    version = ConsentVersionFactory()
    unsaved = Consent(
        patient=patient,
        consent_version=version,
        signed_date=patient.enrolment_date,
        obtained_by="RN01",
        scope_registry=True,
        scope_future_contact=True,
    )
    return record_consent(
        consent=unsaved, user=nurse, document=SimpleUploadedFile("signed.pdf", PDF, content_type="application/pdf")
    )


# --- the consent page and its PDF ------------------------------------------------


@pytest.mark.parametrize(
    ("role", "status"), [("nurse", 200), ("admin_user", 200), ("other_nurse", 404), ("investigator", 403)]
)
def test_who_opens_a_consent_and_its_pdf(client, request, consent, role, status):
    client.force_login(request.getfixturevalue(role))
    assert client.get(f"/patients/consents/{consent.pk}/").status_code == status
    assert client.get(f"/patients/consents/{consent.pk}/document/").status_code == status
    assert client.get(f"/patients/consents/{consent.pk}/withdraw/").status_code == status


def test_the_pdf_comes_through_the_permission_check_only(client, nurse, consent, settings):
    client.force_login(nurse)
    page = client.get(f"/patients/consents/{consent.pk}/").content.decode()
    assert "matches its recorded SHA-256" in page and consent.document_sha256 in page
    response = client.get(f"/patients/consents/{consent.pk}/document/")
    assert response["Content-Type"] == "application/pdf" and b"".join(response.streaming_content) == PDF
    assert "no-store" in response["Cache-Control"]
    record_view, document_view = AuditEvent.objects.filter(action="view").order_by("id")
    assert record_view.extra["page"] == "consent record" and "document_matches_sha256" in document_view.extra
    for viewed in (record_view, document_view):
        assert viewed.username == "nurse" and viewed.study_id == consent.patient.study_id
    assert client.get(f"/{settings.MEDIA_URL}{consent.document.name}").status_code == 404


def test_a_changed_pdf_is_flagged(client, admin_user, consent):
    with open(consent.document.path, "ab") as fh:
        fh.write(b"tampered")
    client.force_login(admin_user)
    page = client.get(f"/patients/consents/{consent.pk}/").content.decode()
    assert "no longer matches the SHA-256" in page
    assert client.get(f"/patients/consents/{consent.pk}/document/")["X-Document-SHA256-Matches"] == "no"


def test_the_page_shows_the_other_consent_records_of_the_patient(client, nurse, consent):
    v2 = ConsentVersionFactory(version="2.0", effective_from=datetime.date(2024, 6, 1))
    reconsent = ConsentFactory(patient=consent.patient, consent_version=v2, signed_date=datetime.date(2024, 7, 1))
    client.force_login(nurse)
    page = client.get(f"/patients/consents/{reconsent.pk}/").content.decode()
    assert f"/patients/consents/{consent.pk}/" in page


# --- withdrawal -------------------------------------------------------------------


def test_a_nurse_withdraws_with_remove_data_and_the_patient_leaves_analyses_at_once(client, nurse, consent):
    patient = consent.patient
    assert filtered_patients(nurse, {}).filter(pk=patient.pk).exists()
    client.force_login(nurse)
    response = client.post(
        f"/patients/consents/{consent.pk}/withdraw/",
        {
            "withdrawal_scope": "remove_data",
            "withdrawn_date": datetime.date.today(),
            "withdrawal_reason": "Asked by phone",
        },
    )
    assert response.status_code == 302 and response["Location"] == f"/patients/consents/{consent.pk}/"
    consent.refresh_from_db()
    assert consent.withdrawal_scope == "remove_data" and consent.withdrawal_reason == "Asked by phone"
    assert not filtered_patients(nurse, {}).filter(pk=patient.pk).exists()
    assert not Patient.objects.in_analysis().filter(pk=patient.pk).exists()
    assert "no new data may be entered" in Patient.objects.get(pk=patient.pk).data_entry_block_reason()
    event = AuditEvent.objects.get(action="update", model="patients.Consent")
    assert event.reason == "Consent withdrawn: Asked by phone" and event.changes["withdrawal_scope"] == [
        "",
        "remove_data",
    ]


def test_a_withdrawal_needs_scope_reason_and_a_date_after_signing(client, admin_user, consent):
    client.force_login(admin_user)
    url = f"/patients/consents/{consent.pk}/withdraw/"
    response = client.post(url, {"withdrawn_date": datetime.date.today()})
    errors = response.context["form"].errors
    assert set(errors) == {"withdrawal_scope", "withdrawal_reason"}
    early = consent.signed_date - datetime.timedelta(days=1)
    response = client.post(url, {"withdrawal_scope": "no_contact", "withdrawn_date": early, "withdrawal_reason": "x"})
    assert "before the consent was signed" in str(response.context["form"].errors["withdrawn_date"])
    consent.refresh_from_db()
    assert consent.withdrawn_date is None


def test_an_investigator_or_another_site_cannot_withdraw(client, investigator, other_nurse, consent):
    data = {"withdrawal_scope": "remove_data", "withdrawn_date": datetime.date.today(), "withdrawal_reason": "x"}
    for user, status in ((investigator, 403), (other_nurse, 404)):
        client.force_login(user)
        assert client.post(f"/patients/consents/{consent.pk}/withdraw/", data).status_code == status
    consent.refresh_from_db()
    assert consent.withdrawn_date is None


# --- consent versions ----------------------------------------------------------------


def test_an_admin_creates_and_edits_a_version_with_a_reason(client, admin_user):
    client.force_login(admin_user)
    blank = SimpleUploadedFile("form.pdf", BLANK_PDF, content_type="application/pdf")
    response = client.post(
        "/patients/consent-versions/new/", {"version": "3.0", "effective_from": "2025-01-01", "blank_form": blank}
    )
    assert response.status_code == 302
    version = ConsentVersion.objects.get(version="3.0")
    assert AuditEvent.objects.filter(action="create", model="patients.ConsentVersion").exists()
    assert b"".join(client.get(f"/patients/consent-versions/{version.pk}/form/").streaming_content) == BLANK_PDF

    url = f"/patients/consent-versions/{version.pk}/edit/"
    response = client.post(url, {"effective_from": "2025-01-01", "effective_to": "2025-12-31"})
    assert "Give the reason" in response.content.decode()
    response = client.post(
        url, {"effective_from": "2025-01-01", "effective_to": "2025-12-31", "reason_for_change": "Replaced by 4.0"}
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="update", model="patients.ConsentVersion")
    assert event.changes == {"effective_to": [None, "2025-12-31"]} and event.reason == "Replaced by 4.0"
    assert "3.0" in client.get("/patients/consent-versions/").content.decode()


def test_a_versions_period_cannot_shrink_past_its_signed_consents(client, admin_user, consent):
    client.force_login(admin_user)
    version = consent.consent_version
    response = client.post(
        f"/patients/consent-versions/{version.pk}/edit/",
        {"effective_from": "2010-01-01", "effective_to": "2020-01-01", "reason_for_change": "tidy"},
    )
    assert response.status_code == 200 and "outside the new period" in response.content.decode()


def test_signing_outside_a_versions_period_is_refused(admin_user, site):
    version = ConsentVersionFactory(version="9.0", effective_from=datetime.date(2025, 1, 1))
    patient = PatientFactory(site=site)
    unsaved = Consent(
        patient=patient,
        consent_version=version,
        signed_date=datetime.date(2024, 3, 1),
        obtained_by="RN01",
        scope_registry=True,
        scope_future_contact=False,
    )
    with pytest.raises(Exception, match="outside that period"):
        record_consent(consent=unsaved, user=admin_user)


# --- the register ----------------------------------------------------------------------


@pytest.fixture
def register(site, other_site):
    """One patient in each state; version 2.0 is current, 1.0 ended."""
    old = ConsentVersionFactory(
        version="1.0", effective_from=datetime.date(2010, 1, 1), effective_to=datetime.date(2024, 12, 31)
    )
    new = ConsentVersionFactory(version="2.0", effective_from=datetime.date(2025, 1, 1))
    p = {
        name: PatientFactory(site=site, study_id=f"PSP-{n:04d}")
        for n, name in enumerate(["current", "reconsent", "missing", "refused", "removed", "no_contact"], start=1)
    }
    ConsentFactory(patient=p["current"], consent_version=old, signed_date=datetime.date(2024, 3, 1))
    ConsentFactory(patient=p["current"], consent_version=new, signed_date=datetime.date(2025, 2, 1), obtained_by="=cmd")
    ConsentFactory(patient=p["reconsent"], consent_version=old)
    ConsentFactory(patient=p["refused"], consent_version=old, scope_registry=False)
    ConsentFactory(
        patient=p["removed"],
        consent_version=old,
        withdrawn_date=datetime.date(2024, 5, 1),
        withdrawal_scope="remove_data",
    )
    ConsentFactory(
        patient=p["no_contact"],
        consent_version=old,
        withdrawn_date=datetime.date(2024, 5, 1),
        withdrawal_scope="no_contact",
    )
    ConsentFactory(
        patient=PatientFactory(site=other_site, study_id="ZZ-0001"),
        consent_version=new,
        signed_date=datetime.date(2025, 3, 1),
    )
    return p


def test_the_register_shows_each_patients_current_state(client, admin_user, register):
    client.force_login(admin_user)
    response = client.get("/audit/consents/")
    rows = {r.patient.study_id: r for r in response.context["rows"]}
    assert {sid: (r.state.value, r.needs_reconsent, r.lacks_valid_consent) for sid, r in rows.items()} == {
        "PSP-0001": ("valid", False, False),
        "PSP-0002": ("valid", True, False),
        "PSP-0003": ("missing", False, True),
        "PSP-0004": ("refused", False, True),
        "PSP-0005": ("withdrawn", False, True),
        "PSP-0006": ("withdrawn", False, False),
        "ZZ-0001": ("valid", False, False),
    }
    assert [r.patient.study_id for r in response.context["reconsent"]] == ["PSP-0002"]
    assert rows["PSP-0001"].consent.consent_version.version == "2.0"  # the re-consent, not the first record
    page = response.content.decode()
    assert page.count('class="table-danger"') == 3 and "To re-consent to version 2.0" in page


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"site": "ZZ"}, ["ZZ-0001"]),
        ({"version": "2.0"}, ["PSP-0001", "ZZ-0001"]),
        ({"state": "missing"}, ["PSP-0003"]),
        ({"state": "withdrawn"}, ["PSP-0005", "PSP-0006"]),
        ({"state": "reconsent"}, ["PSP-0002"]),
        ({"site": "PSP", "state": "valid"}, ["PSP-0001", "PSP-0002"]),
    ],
)
def test_the_register_filters(client, admin_user, register, params, expected):
    client.force_login(admin_user)
    assert [r.patient.study_id for r in client.get("/audit/consents/", params).context["rows"]] == expected


def test_the_register_csv_matches_the_records(client, admin_user, register):
    client.force_login(admin_user)
    response = client.get("/audit/consents/register.csv")
    assert response.streaming
    rows = {r["study_id"]: r for r in csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))}
    assert len(rows) == Patient.objects.count()
    for study_id, row in rows.items():
        consent = Patient.objects.get(study_id=study_id).current_consent()
        if consent is None:
            assert row["state"] == "missing" and row["consent_version"] == "" and row["signed_date"] == ""
            continue
        assert row["consent_version"] == consent.consent_version.version
        assert row["signed_date"] == consent.signed_date.isoformat()
        assert row["scope_registry"] == ("yes" if consent.scope_registry else "no")
        assert row["withdrawal_scope"] == consent.withdrawal_scope
    assert rows["PSP-0001"]["obtained_by"] == "'=cmd"  # neutralised for Excel
    assert rows["PSP-0002"]["needs_reconsent"] == "yes"
    assert AuditEvent.objects.filter(action="export", reason="Consent register CSV").exists()


def test_the_register_takes_a_fixed_number_of_queries(client, admin_user, register, django_assert_num_queries):
    client.force_login(admin_user)
    for n in range(20):
        ConsentFactory(patient=PatientFactory(study_id=f"PSP-{n + 100:04d}"))
    # session, user, current version, patients with sites, their consents with versions,
    # site and version choices of the filter form, the admin's second-factor device,
    # session save (savepoint, update, release)
    with django_assert_num_queries(11):
        response = client.get("/audit/consents/")
    assert len(response.context["rows"]) == 27


def test_a_remove_data_withdrawal_changes_the_dashboards_n_at_once(client, admin_user, investigator, consent):
    ConsentFactory(patient=PatientFactory(site=consent.patient.site))  # a second patient who stays
    client.force_login(investigator)
    assert client.get("/dashboard/summary.json").json()["cohort"]["patients"] == 2
    client.force_login(admin_user)
    client.post(
        f"/patients/consents/{consent.pk}/withdraw/",
        {"withdrawal_scope": "remove_data", "withdrawn_date": datetime.date.today(), "withdrawal_reason": "Letter"},
    )
    client.force_login(investigator)
    cohort = client.get("/dashboard/summary.json").json()["cohort"]
    assert cohort["patients"] == 1 and cohort["excluded_withdrawn"] == 1


def test_the_version_form_shows_its_dates_to_the_date_picker(client, admin_user):
    version = ConsentVersionFactory(version="5.0", effective_from=datetime.date(2025, 2, 3))
    client.force_login(admin_user)
    assert 'value="2025-02-03"' in client.get(f"/patients/consent-versions/{version.pk}/edit/").content.decode()
