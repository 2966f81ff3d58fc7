"""The read-only token API (django-ninja): the summary and the cohort's records.

Authentication: `Authorization: Bearer <token>` with a personal token from
/api/tokens/. The token acts as its user: the same roles and sites as the
pages (`summary` for everyone who sees the dashboard, `records` for those who
export), the same filters, the same de-identification as the export (an
investigator's records never hold a name, an MRN or a calendar date). Every
call is in the audit trail (who, which token, path and query, answer). Writes
stay in the browser and the importer.
"""

import csv
import io
import zipfile
from typing import Any, Literal

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from ninja import NinjaAPI, Query, Schema
from ninja.security import HttpBearer

from accounts.models import User
from api.models import ApiToken, token_hash
from audit.models import AuditEvent
from audit.services import record_event
from dashboard.summary import registry_summary
from exchange.exporter import DEIDENTIFIED, IDENTIFIED, SHAPE_BOTH, SHAPE_LONG, SHAPE_WIDE, ExportSpec
from exchange.services import start_export
from outcomes.cohort import CohortFilterForm

SUMMARY_ROLES = (User.Role.NURSE, User.Role.INVESTIGATOR, User.Role.MONITOR, User.Role.ADMIN)
RECORD_ROLES = (User.Role.INVESTIGATOR, User.Role.ADMIN)


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        found = ApiToken.objects.select_related("user").filter(key_hash=token_hash(token)).first()
        if found is None or not found.active or not found.user.is_active:
            return None
        ApiToken.objects.filter(pk=found.pk).update(last_used_at=timezone.now(), uses=found.uses + 1)
        request.user = found.user
        return found


api = NinjaAPI(
    title="Sacroplasty registry API",
    version="1",
    description=__doc__,
    auth=TokenAuth(),
    urls_namespace="api",
    docs_url=None,  # the interactive page loads scripts from a CDN; the schema is at openapi.json
)


class Filters(Schema):
    site: str | None = None
    approach: str | None = None
    primary_tumour: str | None = None
    procedure_from: str | None = None
    procedure_to: str | None = None


class Error(Schema):
    error: str
    fields: dict[str, list[str]] | None = None


def _audit(request: HttpRequest, status: int, **extra: Any) -> None:
    token: ApiToken = request.auth  # type: ignore[attr-defined]
    record_event(
        action=AuditEvent.Action.VIEW,
        user=token.user,
        reason="API",
        extra={"api_token": token.prefix, "path": request.path, "query": request.GET.dict(), "status": status, **extra},
    )


def _refused(request: HttpRequest, status: int, error: str, fields: dict[str, list[str]] | None = None) -> Any:
    _audit(request, status)
    return status, {"error": error, "fields": fields}


def _filters(request: HttpRequest, given: Filters) -> tuple[dict[str, Any] | None, dict[str, list[str]]]:
    form = CohortFilterForm({k: v for k, v in given.dict().items() if v}, user=request.user)
    if not form.is_valid():
        return None, {field: [str(e) for e in errors] for field, errors in form.errors.items()}
    return form.as_filters(), {}


def _role_ok(user: User, roles: tuple[str, ...]) -> bool:
    return user.is_superuser or user.role in roles


@api.get("/summary", response={200: dict, 400: Error, 403: Error}, summary="The registry summary (summary.json)")
def summary(request: HttpRequest, filters: Query[Filters]) -> Any:
    """The same numbers and shape as /dashboard/summary.json, for the token's user and filters."""
    user = request.user
    if not _role_ok(user, SUMMARY_ROLES):  # type: ignore[arg-type]
        return _refused(request, 403, _("This account does not see the dashboard."))
    parsed, problems = _filters(request, filters)
    if parsed is None:
        return _refused(request, 400, _("Invalid filters."), problems)
    result = registry_summary(user, parsed)  # type: ignore[arg-type]
    _audit(request, 200, filters=parsed)
    return 200, result


class RecordQuery(Filters):
    format: Literal["zip", "json"] = "zip"
    shape: Literal["both", "long", "wide"] = SHAPE_BOTH
    level: Literal["deidentified", "identified"] = DEIDENTIFIED
    reason: str = ""
    packages: bool = False


@api.get(
    "/records",
    response={200: dict, 400: Error, 403: Error},
    summary="The cohort's records, as the export writes them",
    description="format=zip: the export zip (CSV bundle, wide file, dictionary, manifest; packages=true adds "
    "the SPSS/Stata/R files of the same CSVs, several times the CSVs' time for a large cohort). "
    "format=json: {file: [rows as the CSV cells]} of the same CSVs. De-identified unless an administrator "
    "asks for level=identified with a reason; de-identified date filters are whole calendar years only.",
)
def records(request: HttpRequest, query: Query[RecordQuery]) -> Any:
    user = request.user
    if not _role_ok(user, RECORD_ROLES):  # type: ignore[arg-type]
        return _refused(request, 403, _("This account does not export records."))
    parsed, problems = _filters(request, query)
    if parsed is None:
        return _refused(request, 400, _("Invalid filters."), problems)
    assert query.shape in (SHAPE_BOTH, SHAPE_LONG, SHAPE_WIDE) and query.level in (DEIDENTIFIED, IDENTIFIED)
    spec = ExportSpec(
        user=user,
        username=user.get_username(),
        filters=parsed,
        level=query.level,
        shape=query.shape,
        reason=query.reason,
        packages=query.packages and query.format == "zip",  # the JSON holds the CSVs only
    )
    try:
        stream = start_export(spec, via="api")
    except PermissionDenied as exc:
        return _refused(request, 403, str(exc))
    except ValidationError as exc:
        return _refused(
            request, 400, _("Invalid export."), {k: [str(m) for m in v] for k, v in exc.message_dict.items()}
        )
    _audit(request, 200, level=spec.level, shape=spec.shape, format=query.format)
    if query.format == "zip":
        response = StreamingHttpResponse(stream, content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="psp-registry-{spec.level}.zip"'
        return response
    zf = zipfile.ZipFile(io.BytesIO(b"".join(stream)))
    files = {
        name[: -len(".csv")]: list(csv.DictReader(io.StringIO(zf.read(name).decode("utf-8"))))
        for name in zf.namelist()
        if name.endswith(".csv") and "/" not in name
    }
    return 200, files


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    return api.create_response(request, {"error": "; ".join(exc.messages)}, status=400)
