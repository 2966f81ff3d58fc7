"""Reads for the nurse's pages: self-reports waiting for review at her sites."""

from django.db.models import QuerySet

from accounts.models import User
from accounts.permissions import scope_to_sites
from selfreport.models import SelfReport, SelfReportLink


def pending_reports(user: User) -> QuerySet[SelfReport]:
    reports = SelfReport.objects.filter(status=SelfReport.Status.PENDING).select_related("link__patient__site")
    return scope_to_sites(reports, user, "link__patient__site").order_by("submitted_at")


def links_of_sites(user: User) -> QuerySet[SelfReportLink]:
    links = SelfReportLink.objects.select_related("patient__site").prefetch_related("messages")
    return scope_to_sites(links, user, "patient__site")
