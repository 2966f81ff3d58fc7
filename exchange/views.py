from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone

from accounts.permissions import ADMIN, INVESTIGATOR, admin_required, role_required
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
            reason=form.cleaned_data["reason"],
        )
        response = StreamingHttpResponse(start_export(spec), content_type="application/zip")
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="psp-registry-{spec.level}-{stamp}.zip"'
        response["Cache-Control"] = "no-store"
        return response
    return render(request, "exchange/index.html", {"form": form})


@admin_required
def log(request: HttpRequest) -> HttpResponse:
    page = Paginator(ExportLog.objects.visible_to(request.user).order_by("-at", "-id"), 50).get_page(
        request.GET.get("page")
    )
    return render(request, "exchange/log.html", {"page": page})
