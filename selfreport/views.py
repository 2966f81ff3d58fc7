"""The patient's page (/r/<token>/, no account) and the nurse's pages: send a link, review a self-report."""

import qrcode
import qrcode.image.svg
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts.permissions import data_entry_required, scope_to_sites
from accounts.throttle import client_ip
from outcomes import odi
from patients.models import Patient
from registry.measures import as_entered
from selfreport import messaging, selectors, services
from selfreport.forms import AnswersForm, ReasonForm, ReviewForm, SendLinkForm
from selfreport.models import STAFF_KINDS, Kind, NotificationOptOut, SelfReport


def _refused(request: HttpRequest, status: int) -> HttpResponse:
    # One message for every wrong, expired, revoked or used token: nothing about any patient
    # (in the registry's patient language, since the token names no site).
    with translation.override(settings.SELFREPORT_LANGUAGE):
        return render(request, "selfreport/patient_refused.html", {"message": _(services.NEUTRAL)}, status=status)


@never_cache
def patient(request: HttpRequest, token: str) -> HttpResponse:
    address = client_ip(request) or "0.0.0.0"
    if services.too_many_failures(address):
        return _refused(request, 429)
    link = services.link_for_token(token, address)
    if link is None:
        return _refused(request, 404)
    language = services.language_for(link.patient)
    with translation.override(language):
        text = odi.text_for(language)
        form = AnswersForm(request.POST or None, odi_text=text)
        if request.method == "POST" and form.is_valid():
            try:
                services.submit_report(
                    link=link, vas=form.cleaned_data["vas"], odi=form.odi(), medications=form.medications()
                )
            except ValidationError:
                return _refused(request, 409)
            return render(request, "selfreport/patient_done.html", {"language": language})
        services.mark_opened(link)
        first_name = (link.patient.full_name.split() or [""])[0]
        return render(
            request,
            "selfreport/patient_form.html",
            {"form": form, "first_name": first_name, "visit": link.visit_name, "odi": text, "language": language},
            status=400 if request.method == "POST" else 200,
        )


def _qr_svg(url: str) -> str:
    return qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=12).to_string(encoding="unicode")


@data_entry_required
def send(request: HttpRequest) -> HttpResponse:
    form = SendLinkForm(request.POST or None, initial=request.GET.dict())
    if request.method == "POST" and form.is_valid():
        patients = scope_to_sites(Patient.objects.select_related("site"), request.user)
        patient = patients.filter(study_id=form.cleaned_data["study_id"].strip().upper()).first()
        if patient is None:
            form.add_error("study_id", _("No patient with this study ID at your sites."))
        else:
            try:
                link = services.create_link(
                    patient=patient, timepoint=form.cleaned_data["timepoint"], user=request.user
                )
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                url = messaging.link_url(link.new_token())
                emailed = bool(
                    form.cleaned_data["send_email"]
                    and patient.email
                    and messaging.queue(
                        key=f"invitation:{link.pk}", kind=Kind.INVITATION, to_address=patient.email, link=link
                    )
                )
                response = render(
                    request,
                    "selfreport/link_created.html",
                    {"link": link, "url": url, "qr": _qr_svg(url), "emailed": emailed, "patient": patient},
                )
                return response
    return render(request, "selfreport/send.html", {"form": form}, status=400 if form.errors else 200)


@data_entry_required
def links(request: HttpRequest) -> HttpResponse:
    """The links of the nurse's sites still waiting for the patient, with their e-mails' delivery."""
    now = timezone.now()
    waiting = (
        selectors.links_of_sites(request.user)
        .filter(revoked_at__isnull=True, submitted_at__isnull=True, expires_at__gt=now)
        .order_by("expires_at")[:200]
    )
    return render(request, "selfreport/links.html", {"links": waiting})


@data_entry_required
@require_POST
def revoke(request: HttpRequest, pk: int) -> HttpResponse:
    link = get_object_or_404(selectors.links_of_sites(request.user), pk=pk)
    form = ReasonForm(request.POST)
    if form.is_valid():
        try:
            services.revoke_link(link=link, user=request.user, reason=form.cleaned_data["reason"])
            messages.success(request, _("Link %(n)s revoked.") % {"n": link.pk})
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
    else:
        messages.error(request, _("Reason: give the reason for revoking the link."))
    return redirect("selfreport:links")


def _initial(report: SelfReport) -> dict[str, object]:
    initial: dict[str, object] = {"vas": as_entered(report.vas)}  # 7, not 7.0 (registry.measures)
    initial.update({f"odi_q{i}": "" if a is None else str(a) for i, a in enumerate(report.odi_answers, 1)})
    for r, med in enumerate(report.medications.all(), 1):
        initial[f"drug_{r}"], initial[f"dose_{r}"] = med.drug, as_entered(med.daily_dose)  # 60, not 6E+1
    return initial


@data_entry_required
def review(request: HttpRequest, pk: int) -> HttpResponse:
    reports = SelfReport.objects.select_related("link__patient__site", "reviewed_by").prefetch_related("medications")
    report = get_object_or_404(scope_to_sites(reports, request.user, "link__patient__site"), pk=pk)
    text = odi.text_for("en")
    form = ReviewForm(request.POST or None, initial=_initial(report), odi_text=text)
    if request.method == "POST" and report.status == SelfReport.Status.PENDING:
        if request.POST.get("action") == "reject":
            reason = request.POST.get("reason", "")
            try:
                services.reject_report(report=report, user=request.user, reason=reason)
            except ValidationError as exc:
                form.is_valid()
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                messages.success(request, _("Self-report rejected."))
                return redirect("patients:worklist")
        elif form.is_valid():
            try:
                visit = services.accept_report(
                    report=report,
                    user=request.user,
                    vas=form.cleaned_data["vas"],
                    odi=form.odi(),
                    medications=form.medications(),
                    reason=form.cleaned_data["reason"],
                )
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                messages.success(request, _("Self-report accepted: the visit %(v)s is recorded.") % {"v": visit})
                return redirect("patients:detail", report.link.patient.study_id)
    patient_odi = []
    for i, answer in enumerate(report.odi_answers):
        section = text["sections"][i]
        patient_odi.append(
            (section["title"], _("skipped") if answer is None else f"{answer} – {section['statements'][answer]}")
        )
    return render(
        request,
        "selfreport/review.html",
        {"report": report, "form": form, "patient_odi": patient_odi, "patient": report.link.patient},
        status=400 if form.errors else 200,
    )


@never_cache
def preferences(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        from django.contrib.auth.views import redirect_to_login

        return redirect_to_login(request.get_full_path())
    if request.method == "POST":
        wanted = set(request.POST.getlist("kind"))
        for kind in STAFF_KINDS:
            if kind in wanted:
                NotificationOptOut.objects.filter(user=request.user, kind=kind).delete()
            else:
                NotificationOptOut.objects.get_or_create(user=request.user, kind=kind)
        messages.success(request, _("Notification settings saved."))
        return redirect("selfreport:preferences")
    off = set(NotificationOptOut.objects.filter(user=request.user).values_list("kind", flat=True))
    kinds = [(k, Kind(k).label, k not in off) for k in STAFF_KINDS]
    return render(request, "selfreport/preferences.html", {"kinds": kinds})
