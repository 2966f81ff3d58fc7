"""Every URL x every role -> the answer it must give.

`test_every_url_is_in_the_matrix` walks the URL resolver and fails when a route
exists that is not in MATRIX (or a row names a route that no longer exists): a
new page is not done until its row is added here. The Django admin has its own
permission layer (RegistryAdminSite, tests/accounts/test_admin_access.py); it is
covered by the sample rows in ADMIN_SAMPLES rather than route by route.

Expected answers: a status code, LOGIN (302 to the log-in page) or REDIRECT
(302 elsewhere, e.g. the home page sending each role to its start page).
"""

from decimal import Decimal
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from oversight.models import DataQuery
from patients.models import CaseLock, Consent
from patients.services import record_consent
from selfreport.models import SelfReport, SelfReportLink
from tests.factories import ConsentVersionFactory, PatientFactory, ProcedureFactory

pytestmark = pytest.mark.django_db

LOGIN, REDIRECT = "login", "redirect"
ROLES = ("anonymous", "nurse", "other_nurse", "investigator", "admin_user", "monitor")


def _answers(
    anonymous: Any, nurse: Any, other_nurse: Any, investigator: Any, admin: Any, monitor: Any
) -> dict[str, Any]:
    return dict(zip(ROLES, (anonymous, nurse, other_nurse, investigator, admin, monitor), strict=True))


# The monitor (site PSP) reads every case of her sites, identified, and never edits a value.
ANYONE_LOGGED_IN = _answers(LOGIN, 200, 200, 200, 200, 200)
ADMIN_ONLY = _answers(LOGIN, 403, 403, 403, 200, 403)
DATA_ENTRY = _answers(LOGIN, 200, 200, 403, 200, 403)  # lists and forms scoped to the user's sites
DATA_ENTRY_OF_SITE = _answers(LOGIN, 200, 404, 403, 200, 403)  # one object of site PSP: other sites get 404
CASE_READ = _answers(LOGIN, 200, 200, 403, 200, 200)  # the identified case: nurses, the monitor, admins
CASE_READ_OF_SITE = _answers(LOGIN, 200, 404, 403, 200, 200)
MONITORING = _answers(LOGIN, 403, 403, 200, 200, 200)  # monitors, investigators and admins
POST_ONLY = _answers(405, 405, 405, 405, 405, 405)

# route (as the resolver spells it) -> (path to request, expected answer per role)
MATRIX: dict[str, tuple[str, dict[str, Any]]] = {
    "": ("/", _answers(LOGIN, REDIRECT, REDIRECT, REDIRECT, REDIRECT, REDIRECT)),
    # accounts
    "accounts/login/": ("/accounts/login/", _answers(200, 200, 200, 200, 200, 200)),
    "accounts/logout/": ("/accounts/logout/", _answers(405, 405, 405, 405, 405, 405)),  # POST only
    "accounts/password/": ("/accounts/password/", ANYONE_LOGGED_IN),
    "accounts/language/": ("/accounts/language/", POST_ONLY),  # the header switcher's form, for everyone
    # the user guide: /help/ opens the reader's own role's page; every role may read every page
    "help/": ("/help/", _answers(LOGIN, REDIRECT, REDIRECT, REDIRECT, REDIRECT, REDIRECT)),
    "help/<slug:role>/": ("/help/monitor/", ANYONE_LOGGED_IN),
    "accounts/password/done/": ("/accounts/password/done/", ANYONE_LOGGED_IN),
    # second factor: the admin has one (and a verified session), the nurses and the investigator none
    "accounts/two-factor/": ("/accounts/two-factor/", _answers(LOGIN, REDIRECT, REDIRECT, REDIRECT, 200, REDIRECT)),
    "accounts/two-factor/enrol/": ("/accounts/two-factor/enrol/", _answers(LOGIN, 200, 200, 200, REDIRECT, 200)),
    "accounts/two-factor/verify/": (
        "/accounts/two-factor/verify/",
        _answers(LOGIN, REDIRECT, REDIRECT, REDIRECT, REDIRECT, REDIRECT),
    ),
    "accounts/two-factor/remove/": (
        "/accounts/two-factor/remove/",
        _answers(LOGIN, 405, 405, 405, 405, 405),
    ),  # POST only
    # patients (data entry)
    "patients/": ("/patients/", CASE_READ),
    "patients/worklist/": ("/patients/worklist/", DATA_ENTRY),
    "patients/enrol/": ("/patients/enrol/", DATA_ENTRY),
    "patients/<str:study_id>/": ("/patients/{study_id}/", CASE_READ_OF_SITE),
    "patients/<str:study_id>/edit/": ("/patients/{study_id}/edit/", DATA_ENTRY_OF_SITE),
    "patients/<str:study_id>/consent/": ("/patients/{study_id}/consent/", DATA_ENTRY_OF_SITE),
    # procedures and visits (data entry)
    "procedures/new/<str:study_id>/": ("/procedures/new/{study_id}/", DATA_ENTRY_OF_SITE),
    "procedures/<int:pk>/edit/": ("/procedures/{procedure}/edit/", DATA_ENTRY_OF_SITE),
    "visits/<str:study_id>/<str:timepoint>/": ("/visits/{study_id}/m1/", DATA_ENTRY_OF_SITE),
    # dashboard (every role, own sites; the JSON API answers 403, not a redirect)
    "dashboard/": ("/dashboard/", ANYONE_LOGGED_IN),
    "dashboard/summary.json": ("/dashboard/summary.json", _answers(403, 200, 200, 200, 200, 200)),
    "dashboard/report/": ("/dashboard/report/", ANYONE_LOGGED_IN),
    "dashboard/report.pdf": ("/dashboard/report.pdf", ANYONE_LOGGED_IN),
    "dashboard/report/figure/<slug:name>.svg": ("/dashboard/report/figure/vas.svg", ANYONE_LOGGED_IN),
    "dashboard/report/table/<slug:name>.csv": ("/dashboard/report/table/outcomes.csv", ANYONE_LOGGED_IN),
    # the token API (api/): token pages for every logged-in user; the endpoints answer a bearer token only
    "api/tokens/": ("/api/tokens/", ANYONE_LOGGED_IN),
    "api/tokens/<int:pk>/revoke/": ("/api/tokens/1/revoke/", _answers(LOGIN, 405, 405, 405, 405, 405)),  # POST only
    "api/v1/": ("/api/v1/", _answers(404, 404, 404, 404, 404, 404)),
    "api/v1/openapi.json": ("/api/v1/openapi.json", _answers(200, 200, 200, 200, 200, 200)),
    "api/v1/summary": ("/api/v1/summary", _answers(401, 401, 401, 401, 401, 401)),
    "api/v1/records": ("/api/v1/records", _answers(401, 401, 401, 401, 401, 401)),
    # exports (investigators and admins; nurses enter data but do not export)
    "exports/": ("/exports/", _answers(LOGIN, 403, 403, 200, 200, 403)),
    "exports/log/": ("/exports/log/", ADMIN_ONLY),
    # audit
    "audit/": ("/audit/", ADMIN_ONLY),
    "audit/trail.csv": ("/audit/trail.csv", ADMIN_ONLY),
    "audit/patients/<str:study_id>/": ("/audit/patients/{study_id}/", ADMIN_ONLY),
    "audit/patients/<str:study_id>/delete/": ("/audit/patients/{study_id}/delete/", ADMIN_ONLY),
    "audit/records/<str:kind>/<int:pk>/delete/": ("/audit/records/procedure/{procedure}/delete/", ADMIN_ONLY),
    "patients/consent-versions/": ("/patients/consent-versions/", ADMIN_ONLY),
    "patients/consent-versions/new/": ("/patients/consent-versions/new/", ADMIN_ONLY),
    "patients/consent-versions/<int:pk>/edit/": ("/patients/consent-versions/{version}/edit/", ADMIN_ONLY),
    "patients/consent-versions/<int:pk>/form/": ("/patients/consent-versions/{version}/form/", DATA_ENTRY),
    "audit/consents/": ("/audit/consents/", ADMIN_ONLY),
    "audit/consents/register.csv": ("/audit/consents/register.csv", ADMIN_ONLY),
    "patients/consents/<int:pk>/": ("/patients/consents/{consent}/", CASE_READ_OF_SITE),
    "patients/consents/<int:pk>/document/": ("/patients/consents/{consent}/document/", CASE_READ_OF_SITE),
    "patients/consents/<int:pk>/withdraw/": ("/patients/consents/{consent}/withdraw/", DATA_ENTRY_OF_SITE),
    # study monitoring
    "audit/monitoring/": ("/audit/monitoring/", MONITORING),
    "audit/queries/new/<str:study_id>/": ("/audit/queries/new/{study_id}/", _answers(LOGIN, 403, 403, 200, 200, 200)),
    "audit/queries/<int:pk>/": ("/audit/queries/{query}/", _answers(LOGIN, 200, 404, 200, 200, 200)),
    "audit/patients/<str:study_id>/verify/": ("/audit/patients/{study_id}/verify/", POST_ONLY),
    "audit/patients/<str:study_id>/sign/": (
        "/audit/patients/{study_id}/sign/",
        _answers(LOGIN, 403, 403, 200, 403, 403),
    ),
    "audit/patients/<str:study_id>/end-follow-up/": (
        "/audit/patients/{study_id}/end-follow-up/",
        _answers(LOGIN, 200, 404, 403, 200, 403),
    ),
    "audit/locks/<int:pk>/unlock/": ("/audit/locks/{lock}/unlock/", ADMIN_ONLY),
    "audit/visits/close-missed/": ("/audit/visits/close-missed/", POST_ONLY),
    "audit/quality/": ("/audit/quality/", MONITORING),
    "audit/quality.csv": ("/audit/quality.csv", MONITORING),
    "audit/completeness/": ("/audit/completeness/", MONITORING),
    "audit/completeness.json": ("/audit/completeness.json", MONITORING),
    # self-report: the patient's page answers a wrong token with the same 404 for everyone
    "r/<str:token>/": ("/r/" + "x" * 43 + "/", _answers(404, 404, 404, 404, 404, 404)),
    "selfreport/send/": ("/selfreport/send/", DATA_ENTRY),
    "selfreport/links/": ("/selfreport/links/", DATA_ENTRY),
    "selfreport/links/<int:pk>/revoke/": (
        "/selfreport/links/{link}/revoke/",
        _answers(LOGIN, 405, 405, 403, 405, 403),
    ),
    "selfreport/reports/<int:pk>/": ("/selfreport/reports/{report}/", DATA_ENTRY_OF_SITE),
    "selfreport/notifications/": ("/selfreport/notifications/", ANYONE_LOGGED_IN),
}

ADMIN_LOGIN = "admin_login"
ADMIN_SAMPLES: dict[str, dict[str, Any]] = {
    "/admin/": _answers(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 200, ADMIN_LOGIN),
    "/admin/patients/patient/": _answers(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 200, ADMIN_LOGIN),
    "/admin/audit/auditevent/": _answers(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 200, ADMIN_LOGIN),
    "/admin/audit/auditevent/add/": _answers(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 403, ADMIN_LOGIN),
}


def _routes(patterns: list[Any], prefix: str = "") -> list[str]:
    out = []
    for p in patterns:
        if isinstance(p, URLResolver):
            out += _routes(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            out.append(prefix + str(p.pattern))
    return out


def test_every_url_is_in_the_matrix():
    routes = {r for r in _routes(get_resolver().url_patterns) if not r.startswith("admin/")}
    missing = sorted(routes - MATRIX.keys())
    assert not missing, f"Add these URLs to MATRIX with the answer each role must get: {missing}"
    stale = sorted(MATRIX.keys() - routes)
    assert not stale, f"These MATRIX rows name URLs that no longer exist: {stale}"


@pytest.fixture
def world(site, other_site, nurse, investigator):
    """A consented PSP patient with a signed PDF and a procedure; a version with its blank form."""
    version = ConsentVersionFactory(blank_form=SimpleUploadedFile("blank.pdf", b"%PDF blank"))
    patient = PatientFactory(site=site, full_name="Mariam Quistgaard", mrn="MRN-SECRET-77")
    consent = record_consent(
        consent=Consent(
            patient=patient,
            consent_version=version,
            signed_date=patient.enrolment_date,
            obtained_by="RN01",
            scope_registry=True,
            scope_future_contact=True,
        ),
        user=nurse,
        document=SimpleUploadedFile("signed.pdf", b"%PDF signed"),
    )
    procedure = ProcedureFactory(patient=patient)
    query = DataQuery.objects.create(
        patient=patient,
        record_model="procedures.Procedure",
        record_pk=procedure.pk,
        record_label="Procedure 1",
        field="cement_volume_ml",
        field_label="Cement volume injected (mL)",
        question="Please check the volume against the operative note.",
    )
    other = PatientFactory(site=site)
    lock = CaseLock.objects.create(
        patient=other, signed_by=investigator, signed_by_name="Dr I", signed_at=timezone.now(), meaning=CaseLock.MEANING
    )
    link = SelfReportLink.objects.create(patient=patient, timepoint="m1", expires_at=timezone.now())
    report = SelfReport.objects.create(link=link, vas=Decimal("4.0"))
    return {
        "link": link.pk,
        "report": report.pk,
        "query": query.pk,
        "lock": lock.pk,
        "patient": patient,
        "study_id": patient.study_id,
        "consent": consent.pk,
        "procedure": procedure.pk,
        "version": version.pk,
    }


def _body(response: Any) -> str:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return content.decode(errors="replace")


def _check(client: Any, request: Any, path: str, role: str, expected: Any, world: dict[str, Any]) -> None:
    if role != "anonymous":
        client.force_login(request.getfixturevalue(role))
    response = client.get(path)
    location = response.get("Location", "")
    if expected == LOGIN:
        assert response.status_code == 302 and location.startswith("/accounts/login/"), (path, role, location)
    elif expected == ADMIN_LOGIN:
        assert response.status_code == 302 and location.startswith("/admin/login/"), (path, role, location)
    elif expected == REDIRECT:
        assert response.status_code == 302 and "/login/" not in location, (path, role, location)
    else:
        assert response.status_code == expected, (path, role, response.status_code)
    if role == "investigator" and response.status_code == 200:
        body = _body(response)
        assert world["patient"].full_name not in body and world["patient"].mrn not in body, path


@pytest.mark.parametrize(
    ("route", "role"), [(route, role) for route in MATRIX for role in ROLES], ids=lambda v: v or "home"
)
def test_url_role_matrix(client, request, world, route, role):
    template, answers = MATRIX[route]
    _check(client, request, template.format(**world), role, answers[role], world)


@pytest.mark.parametrize(("path", "role"), [(path, role) for path in ADMIN_SAMPLES for role in ROLES])
def test_django_admin_role_samples(client, request, world, path, role):
    _check(client, request, path, role, ADMIN_SAMPLES[path][role], world)
