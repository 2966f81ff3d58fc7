"""The token API: a token reads what its user reads on the pages, nothing more;
a revoked token is refused; an investigator's token never returns a name, an MRN
or a calendar date; every call is audited."""

import io
import json
import re
import zipfile

import pytest
from django.test import Client

from api.models import ApiToken
from audit.models import AuditEvent
from patients.models import Patient
from tests.conftest import VerifiedClient
from tests.exchange.zips import package_names
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
ISO_DATE = re.compile(r"\b(19|20)\d\d-[01]\d-[0-3]\d\b")


def issue(client, user, name="script") -> str:
    """Create a token on the page, as the user would, and read it off the page."""
    client.force_login(user)
    response = client.post("/api/tokens/", {"name": name})
    assert response.status_code == 200
    return re.search(r'id="token-value">([^<]+)<', response.content.decode())[1]


def verified() -> Client:
    """A second browser whose force_login also completes the admin's second factor."""
    return type("VerifiedTestClient", (VerifiedClient, Client), {})()


def bearer(token: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def without_time(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "generated_at"}


def test_a_token_reads_the_same_numbers_as_the_page(demo_cohort, investigator, client):
    token = issue(client, investigator)
    api = bearer(token)
    for filters in ({}, {"primary_tumour": "lung"}, {"approach": "interpedicular", "site": "PSP"}):
        page = client.get("/dashboard/summary.json", filters).json()
        via_token = api.get("/api/v1/summary", filters)
        assert via_token.status_code == 200, via_token.content
        assert without_time(via_token.json()) == without_time(page)
    assert api.get("/api/v1/summary").json()["outcomes"]["vas"]["post"]["baseline"]["mean"] == pytest.approx(6.9)
    assert api.get("/api/v1/summary", {"primary_tumour": "lung"}).json()["cohort"]["patients"] == 4


def test_a_revoked_token_is_refused_and_only_its_owner_revokes_it(demo_cohort, investigator, admin_user, client):
    token = issue(client, investigator)
    api = bearer(token)
    assert api.get("/api/v1/summary").status_code == 200
    row = ApiToken.objects.get(user=investigator)
    assert row.key_hash != token and token not in str(list(ApiToken.objects.values()))  # stored hashed only

    other = verified()
    other.force_login(admin_user)
    assert other.post(f"/api/tokens/{row.pk}/revoke/").status_code == 404  # not hers
    assert api.get("/api/v1/summary").status_code == 200

    assert client.post(f"/api/tokens/{row.pk}/revoke/").status_code == 302
    assert api.get("/api/v1/summary").status_code == 401
    assert api.get("/api/v1/records").status_code == 401
    assert "revoked" in client.get("/api/tokens/").content.decode()
    assert bearer("psp_not-a-token").get("/api/v1/summary").status_code == 401
    assert Client().get("/api/v1/summary").status_code == 401  # no token; a session is not enough either
    assert client.get("/api/v1/summary").status_code == 401


def test_an_investigators_token_never_returns_a_name_an_mrn_or_a_calendar_date(demo_cohort, investigator, client):
    api = bearer(issue(client, investigator))
    names = list(Patient.objects.values_list("full_name", flat=True))
    mrns = list(Patient.objects.values_list("mrn", flat=True))
    assert len(names) == 10

    response = api.get("/api/v1/records", {"format": "json"})
    assert response.status_code == 200
    files = response.json()
    assert len(files["patients"]) == 10 and len(files["analysis_wide"]) == 10
    text = json.dumps(files, ensure_ascii=False)
    assert "full_name" not in text and '"mrn"' not in text
    assert not [n for n in names + mrns if n in text]
    assert not ISO_DATE.search(text), ISO_DATE.search(text)

    zipped = api.get("/api/v1/records", {"format": "zip", "packages": "true"})
    assert zipped.status_code == 200 and zipped["Content-Type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(b"".join(zipped.streaming_content)))
    assert "spss/patients.sav" in zf.namelist()
    csv_only = api.get("/api/v1/records", {"format": "zip"})  # the CSVs only unless asked
    csv_zip = zipfile.ZipFile(io.BytesIO(b"".join(csv_only.streaming_content)))
    assert "patients.csv" in csv_zip.namelist() and package_names(csv_zip) == []
    manifest = json.loads(zf.read("manifest.json"))
    assert manifest["level"] == "deidentified" and manifest["exported_by"] == investigator.username
    for name in zf.namelist():
        if name.endswith((".csv", ".R")):
            body = zf.read(name).decode("utf-8")
            assert not [n for n in names + mrns if n in body], name
            assert not ISO_DATE.search(body), (name, ISO_DATE.search(body))
    # the JSON holds exactly the zip's CSV cells
    from tests.exchange.zips import table

    assert files["followups"] == table(zf, "followups")

    refused = api.get("/api/v1/records", {"level": "identified", "reason": "curious"})
    assert refused.status_code == 403 and "administrators" in refused.json()["error"]


def test_tokens_are_site_scoped_and_role_bound_as_the_pages(demo_cohort, other_site, nurse, client):
    elsewhere = UserFactory(role="investigator", username="inv_zz")
    elsewhere.sites.add(other_site)
    api = bearer(issue(client, elsewhere))
    assert api.get("/api/v1/summary").json()["cohort"]["patients"] == 0
    assert api.get("/api/v1/records", {"format": "json"}).json()["patients"] == []
    assert api.get("/api/v1/summary", {"site": "PSP"}).status_code == 400  # not one of her sites

    nurses = bearer(issue(Client(), nurse))
    assert nurses.get("/api/v1/summary").json()["cohort"]["patients"] == 10  # the dashboard is hers too
    assert nurses.get("/api/v1/records").status_code == 403  # nurses do not export


def test_bad_filters_are_a_400_naming_the_field(demo_cohort, investigator, client):
    api = bearer(issue(client, investigator))
    response = api.get("/api/v1/summary", {"approach": "sideways"})
    assert response.status_code == 400 and "approach" in response.json()["fields"]
    narrow = api.get("/api/v1/records", {"procedure_from": "2018-03-01", "format": "json"})
    assert narrow.status_code == 400 and "procedure_from" in narrow.json()["fields"]


def test_every_call_is_audited_and_counted(demo_cohort, investigator, client):
    token = issue(client, investigator)
    row = ApiToken.objects.get(user=investigator)
    created = AuditEvent.objects.filter(extra__api_token=row.prefix, action=AuditEvent.Action.CREATE)
    assert created.count() == 1
    api = bearer(token)
    api.get("/api/v1/summary", {"primary_tumour": "lung"})
    api.get("/api/v1/summary", {"approach": "sideways"})
    uses = AuditEvent.objects.filter(extra__api_token=row.prefix, action=AuditEvent.Action.VIEW).order_by("id")
    assert [(e.user, e.extra["path"], e.extra["query"], e.extra["status"]) for e in uses] == [
        (investigator, "/api/v1/summary", {"primary_tumour": "lung"}, 200),
        (investigator, "/api/v1/summary", {"approach": "sideways"}, 400),
    ]
    row.refresh_from_db()
    assert row.uses == 2 and row.last_used_at is not None


def test_admins_list_tokens_read_only_without_the_secret(demo_cohort, investigator, admin_user, client):
    token = issue(client, investigator, name="R analysis")
    admin = verified()
    admin.force_login(admin_user)
    page = admin.get("/admin/api/apitoken/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "R analysis" in html and token[:12] in html and token not in html
    row = ApiToken.objects.get(user=investigator)
    assert row.key_hash not in admin.get(f"/admin/api/apitoken/{row.pk}/change/").content.decode()
    assert admin.get("/admin/api/apitoken/add/").status_code == 403


def test_the_openapi_schema_describes_the_endpoints(db):
    schema = Client().get("/api/v1/openapi.json").json()
    assert {"/api/v1/summary", "/api/v1/records"} <= set(schema["paths"])
    params = {p["name"] for p in schema["paths"]["/api/v1/records"]["get"]["parameters"]}
    assert {"format", "site", "procedure_from", "level"} <= params
    assert (
        "BearerAuth" in json.dumps(schema["components"]["securitySchemes"]) or schema["components"]["securitySchemes"]
    )
