from typing import Any

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext

from accounts.permissions import ADMIN, INVESTIGATOR, admin_required, role_required
from exchange import dictionary
from exchange.exporter import ExportSpec
from exchange.forms import ExportForm
from exchange.models import ExportLog
from exchange.services import start_export


@role_required(INVESTIGATOR, ADMIN)
def index(request: HttpRequest) -> HttpResponse:
    """Choose filters, shape and level; a valid POST streams the zip at once."""
    form = ExportForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        spec = ExportSpec(
            user=request.user,
            username=request.user.get_username(),
            filters=form.as_filters(),
            level=form.cleaned_data["level"],
            shape=form.cleaned_data["shape"],
            packages=form.cleaned_data["packages"],
            reason=form.cleaned_data["reason"],
        )
        response = StreamingHttpResponse(start_export(spec), content_type="application/zip")
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="psp-registry-{spec.level}-{stamp}.zip"'
        response["Cache-Control"] = "no-store"
        return response
    return render(request, "exchange/index.html", {"form": form, "dictionary": _dictionary()})


def _label(text: str) -> str:
    return gettext(text) if text else ""  # gettext("") is the catalogue's header


def _dictionary() -> list[dict[str, Any]]:
    """The data dictionary for the export page: names, types, units and codes as in the files, the labels
    in the reader's language (exchange/dictionary_labels.py marks them; the files keep the English)."""
    files = []
    for file in dictionary.FILES:
        variables = [
            {
                "name": v.name,
                "label": _label(v.label),
                "type": v.type,
                "unit": v.unit,
                "choices": [(code, _label(label)) for code, label in v.choices],
                "required": v.required,
            }
            for v in dictionary.variables_for(file)
        ]
        variables += [
            {"name": name, "label": _label(label), "type": kind, "unit": unit, "choices": [], "required": "derived"}
            for name, label, kind, unit in dictionary.EXPORT_EXTRA_COLUMNS.get(file, [])
        ]
        files.append({"file": file, "variables": variables})
    return files


@admin_required
def log(request: HttpRequest) -> HttpResponse:
    page = Paginator(ExportLog.objects.visible_to(request.user).order_by("-at", "-id"), 50).get_page(
        request.GET.get("page")
    )
    return render(request, "exchange/log.html", {"page": page})
