import secrets
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts.models import Site, User
from exchange.importer import BundleError, import_bundle
from patients.models import FollowUpEndReason, Patient
from patients.services import end_follow_up

DEMO_BUNDLE = Path(__file__).resolve().parents[2] / "demo" / "paper_cohort"
DEMO_SITE = "PSP"
DEMO_USERS = (
    ("nurse", User.Role.NURSE),
    ("investigator", User.Role.INVESTIGATOR),
    ("monitor", User.Role.MONITOR),
    ("admin", User.Role.ADMIN),
)
END_NOTE = "The source study (Tian et al. 2019) followed its patients to the post-procedure visit."


def end_demo_follow_up() -> int:
    """End each demo patient's follow-up at her post-procedure visit (the source study's last), through
    the service, so the demo worklist starts clean; the number ended."""
    ended = 0
    for patient in Patient.objects.filter(site__code=DEMO_SITE, follow_up_ended=None):
        visits = {v.timepoint: v.visit_date for v in patient.followups.exclude(visit_date=None)}
        last = visits.get("post") or max(visits.values(), default=None) or patient.index_procedure_date
        end_follow_up(
            patient=patient,
            on=last or patient.enrolment_date,
            reason=FollowUpEndReason.PROTOCOL_COMPLETED,
            note=END_NOTE,
            user=None,
            expected_version=patient.version,
        )
        ended += 1
    return ended


class Command(BaseCommand):
    help = "Load the ten demo cases of Tian et al. 2019 and the demo users nurse, investigator, monitor and admin."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--password", help="password for the demo users (default: a new random one, printed)")

    def handle(self, *args: Any, password: str | None = None, **options: Any) -> None:
        if Patient.objects.filter(site__code=DEMO_SITE).exists():
            self.stdout.write("The demo cohort is already loaded.")
        else:
            try:
                result = import_bundle(DEMO_BUNDLE)
            except BundleError as exc:
                raise CommandError("\n".join(str(p) for p in exc.problems)) from exc
            self.stdout.write(f"Loaded the demo cohort: {result.counts['patients']} patients.")
            self.stdout.write(f"Follow-up ended after the post-procedure visit for {end_demo_follow_up()} patients.")
        password = password or secrets.token_urlsafe(9)
        with transaction.atomic():
            site = Site.objects.get(code=DEMO_SITE)
            for username, role in DEMO_USERS:
                user, _ = User.objects.get_or_create(username=username)
                user.role = role
                user.is_staff = user.is_superuser = role == User.Role.ADMIN
                user.study_wide = role == User.Role.ADMIN
                user.set_password(password)
                user.save()
                user.sites.add(site)
        self.stdout.write("Demo logins (site PSP): " + ", ".join(u for u, _ in DEMO_USERS) + f"; password: {password}")
