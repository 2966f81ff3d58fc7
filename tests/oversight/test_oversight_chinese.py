"""Oversight pages in both languages: the consent register shows the document hash its CSV holds,
a zero count is no alarm, counts are plural-aware, and the pages read Chinese with zh-hans."""

import csv
import hashlib
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import translation

from patients.models import Consent
from patients.services import record_consent
from tests.factories import ConsentVersionFactory, PatientFactory

pytestmark = pytest.mark.django_db
PDF = b"%PDF-1.4 signed consent of a patient\n%%EOF\n"
ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}


@pytest.fixture(autouse=True)
def _english_afterwards():
    yield
    translation.deactivate()  # a request leaves its language active in this thread


@pytest.fixture
def consent(site, nurse):
    patient = PatientFactory(site=site)
    unsaved = Consent(
        patient=patient,
        consent_version=ConsentVersionFactory(),
        signed_date=patient.enrolment_date,
        obtained_by="RN01",
        scope_registry=True,
        scope_future_contact=False,
    )
    document = SimpleUploadedFile("signed.pdf", PDF, content_type="application/pdf")
    return record_consent(consent=unsaved, user=nurse, document=document)


def lacking_span(page: str) -> str:
    start = page.index('<span id="lacking-count"')
    return page[start : page.index("</span>", start)]


def test_the_register_page_shows_the_document_hash_its_csv_holds(client, admin_user, consent):
    client.force_login(admin_user)
    page = client.get("/audit/consents/").content.decode()
    rows = list(
        csv.DictReader(io.StringIO(b"".join(client.get("/audit/consents/register.csv").streaming_content).decode()))
    )
    expected = hashlib.sha256(PDF).hexdigest()  # the uploaded file, hashed here
    assert [r["document_sha256"] for r in rows] == [expected]
    assert f'data-col="document_sha256">{expected}</code>' in page


def test_zero_without_a_valid_consent_is_not_an_alarm_but_one_is(client, admin_user, consent, site):
    client.force_login(admin_user)
    span = lacking_span(client.get("/audit/consents/").content.decode())
    assert "0 without a valid consent" in span and "text-danger" not in span
    assert "1 patient;" in client.get("/audit/consents/").content.decode()  # singular

    PatientFactory(site=site)  # enrolled, no consent recorded
    page = client.get("/audit/consents/").content.decode()
    span = lacking_span(page)
    assert "1 without a valid consent" in span and "text-danger" in span
    assert "2 patients;" in page


def test_the_register_and_the_monitoring_pages_read_chinese(client, admin_user, consent):
    client.force_login(admin_user)
    page = client.get("/audit/consents/", **ZH).content.decode()
    assert "知情同意登记簿" in page and "文件 SHA-256" in page and "0 例无有效知情同意" in page
    for english in ("Consent register", "without a valid consent", "Current version", "Download CSV"):
        assert english not in page
    assert "有效" in page  # the patient's state, translated from the register's ConsentState

    monitoring = client.get("/audit/monitoring/", **ZH).content.decode()
    assert "研究监查" in monitoring and "各中心质疑" in monitoring
    assert "Queries by site" not in monitoring and "Study monitoring" not in monitoring
