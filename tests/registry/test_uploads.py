"""Uploaded consent PDFs and blank forms: real files, through the real forms, the pages and the admin."""

import io
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from pypdf import PdfWriter
from pypdf.generic import DictionaryObject, NameObject, TextStringObject

from patients.models import Consent, ConsentVersion
from tests.factories import ConsentVersionFactory, PatientFactory
from tests.pdfs import real_pdf

pytestmark = pytest.mark.django_db

POLYGLOT = b"%PDF-1.4\n<html><body><script>alert(document.cookie)</script></body></html>\n"


def scripted_pdf() -> bytes:
    """A one-page PDF that runs JavaScript when opened (/OpenAction of the catalogue)."""
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    action = DictionaryObject(
        {NameObject("/S"): NameObject("/JavaScript"), NameObject("/JS"): TextStringObject("app.alert('opened');")}
    )
    writer._root_object[NameObject("/OpenAction")] = writer._add_object(action)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def pdf_with_attachment() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    writer.add_attachment("payload.exe", b"MZ\x90\x00")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def upload(content: bytes, name: str = "signed.pdf") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="application/pdf")


def consent_post(client, patient, version, content, name="signed.pdf"):
    return client.post(
        f"/patients/{patient.study_id}/consent/",
        {
            "consent_version": version.pk,
            "signed_date": patient.enrolment_date.isoformat(),
            "obtained_by": "RN07",
            "scope_registry": "True",
            "scope_future_contact": "False",
            "document": upload(content, name),
        },
    )


def test_the_scripted_pdf_really_holds_javascript():
    # The oracle for the refusal below: the file pypdf wrote names JavaScript to run.
    raw = scripted_pdf()
    assert b"/OpenAction 5 0 R" in raw and b"/S /JavaScript" in raw and b"/JS (app" in raw and raw.startswith(b"%PDF-")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (POLYGLOT, "not a readable PDF"),
        (b"<html><script>alert(1)</script></html>", "not a PDF"),
        (scripted_pdf(), "This PDF contains an action run on opening, which is not allowed"),
        (pdf_with_attachment(), "an embedded file"),
    ],
    ids=["polyglot", "html", "javascript", "attachment"],
)
def test_a_bad_consent_upload_is_refused_with_a_message_and_nothing_is_stored(client, nurse, site, content, message):
    patient, version = PatientFactory(site=site), ConsentVersionFactory()
    client.force_login(nurse)
    response = consent_post(client, patient, version, content, name="consent.html")
    page = response.content.decode()
    assert response.status_code == 200 and message in page
    assert not Consent.objects.exists()


def test_an_oversized_pdf_is_refused_at_the_configured_limit(client, nurse, site, settings):
    settings.UPLOAD_MAX_MB = 1
    patient, version = PatientFactory(site=site), ConsentVersionFactory()
    client.force_login(nurse)
    big = real_pdf(padding=1_200_000)  # a valid PDF of about 1.1 MB
    response = consent_post(client, patient, version, big)
    assert "This file is 1.1 MB; the largest accepted is 1 MB." in response.content.decode()
    assert not Consent.objects.exists()
    settings.UPLOAD_MAX_MB = 2
    assert consent_post(client, patient, version, big).status_code == 302


def test_a_valid_pdf_is_stored_under_a_random_name_and_downloaded_inert(client, nurse, site):
    patient, version = PatientFactory(site=site), ConsentVersionFactory()
    client.force_login(nurse)
    content = real_pdf("signed by Rosa")
    assert consent_post(client, patient, version, content, name="../../Rosa Smith <x>.html").status_code == 302
    consent = Consent.objects.get()
    assert re.fullmatch(r"consents/\d{4}/[0-9a-f]{32}\.pdf", consent.document.name)
    response = client.get(f"/patients/consents/{consent.pk}/document/")
    assert b"".join(response.streaming_content) == content
    assert response["Content-Disposition"].startswith("attachment;")
    assert response["Content-Security-Policy"] == "sandbox"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Type"] == "application/pdf"


def test_blank_forms_get_the_same_checks_on_the_page(client, admin_user):
    client.force_login(admin_user)
    data = {"version": "3.0", "effective_from": "2025-01-01"}
    refused = client.post("/patients/consent-versions/new/", {**data, "blank_form": upload(scripted_pdf())})
    assert "not allowed in a consent document" in refused.content.decode()
    assert not ConsentVersion.objects.filter(version="3.0").exists()
    blank = real_pdf("blank form v3.0")
    assert client.post("/patients/consent-versions/new/", {**data, "blank_form": upload(blank)}).status_code == 302
    version = ConsentVersion.objects.get(version="3.0")
    assert re.fullmatch(r"consent_forms/[0-9a-f]{32}\.pdf", version.blank_form.name)
    response = client.get(f"/patients/consent-versions/{version.pk}/form/")
    assert b"".join(response.streaming_content) == blank
    assert response["Content-Disposition"].startswith("attachment;")
    assert response["Content-Security-Policy"] == "sandbox" and response["X-Content-Type-Options"] == "nosniff"


def test_the_admin_takes_no_upload_around_the_validation(client, admin_user):
    """Consent versions are written only on the registry's pages (validated, audited); the admin is read-only."""
    admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)
    data = {"version": "9.0", "effective_from": "2025-01-01"}
    response = client.post("/admin/patients/consentversion/add/", {**data, "blank_form": upload(POLYGLOT, "form.html")})
    assert response.status_code == 403
    response = client.post("/patients/consent-versions/new/", {**data, "blank_form": upload(POLYGLOT, "form.html")})
    assert response.status_code == 200 and "not a readable PDF" in response.content.decode()
    assert not ConsentVersion.objects.filter(version="9.0").exists()
