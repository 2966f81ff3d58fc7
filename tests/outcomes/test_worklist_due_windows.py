"""The worklist's due windows (outcomes.DueWindow) stay current through every writer: the services
(visits, consents, withdrawals, end of follow-up, deletions), plain ORM updates and import_bundle's
COPY. After each change the worklist is compared with the rules applied in Python to the rows
(test_worklist.oracle), and the long-missed list is one query whatever the number of overdue visits."""

import datetime
import random
from io import StringIO

import pytest
from django.core.management import call_command

from audit.services import delete_audited
from outcomes import selectors
from outcomes.models import DueWindow, FollowUp
from outcomes.services import record_visit
from patients.models import Consent, Patient
from patients.services import end_follow_up, withdraw_consent
from registry.dates import today as registry_today
from tests.conftest import DEMO_BUNDLE
from tests.factories import ConsentFactory, PatientFactory, ProcedureFactory
from tests.outcomes.test_worklist import everything, oracle, random_cohort

pytestmark = pytest.mark.django_db
DAY = datetime.timedelta(days=1)


def assert_worklist_follows_the_rules(nurse, site) -> None:
    today = registry_today()
    expected, _awaiting = oracle({site.pk}, today)
    got = {(v.study_id, v.timepoint, v.opens, v.closes, v.group) for v in everything(selectors.worklist(nurse, today))}
    assert got == expected


def treated(site, days_ago: int) -> Patient:
    patient = PatientFactory(site=site, enrolment_date=registry_today() - (days_ago + 1) * DAY)
    ConsentFactory(patient=patient, signed_date=registry_today() - (days_ago + 1) * DAY)
    ProcedureFactory(patient=patient, procedure_date=registry_today() - days_ago * DAY)
    return patient


def test_every_service_write_moves_the_worklist_in_the_same_transaction(nurse, admin_user, site, other_site):
    random_cohort(random.Random(11), [site, other_site], 30, registry_today())
    a, b, c, d = (treated(site, days) for days in (40, 120, 400, 15))
    assert_worklist_follows_the_rules(nurse, site)

    record_visit(visit=FollowUp(patient=a, timepoint="w1", status=FollowUp.Status.MISSED), user=nurse)
    assert not DueWindow.objects.filter(patient=a, timepoint="w1").exists()
    assert_worklist_follows_the_rules(nurse, site)

    record_visit(visit=FollowUp(patient=b, timepoint="m1", status=FollowUp.Status.WITHDRAWN), user=nurse)
    assert not DueWindow.objects.filter(patient=b).exists()  # follow-up ended by the visit
    assert_worklist_follows_the_rules(nurse, site)

    consent = Consent.objects.get(patient=c)
    withdraw_consent(consent=consent, scope=Consent.WithdrawalScope.NO_NEW_DATA, reason="moved away", user=nurse)
    assert not DueWindow.objects.filter(patient=c).exists()
    ConsentFactory(patient=c, signed_date=registry_today())  # a re-consent reopens follow-up
    assert DueWindow.objects.filter(patient=c).exists()
    assert_worklist_follows_the_rules(nurse, site)

    d.refresh_from_db()
    end_follow_up(patient=d, on=registry_today(), reason="transferred", user=nurse, expected_version=d.version)
    assert not DueWindow.objects.filter(patient=d).exists()
    assert_worklist_follows_the_rules(nurse, site)

    visit = FollowUp.objects.get(patient=a, timepoint="w1")
    delete_audited(visit, user=admin_user, reason="entered on the wrong patient")
    assert DueWindow.objects.filter(patient=a, timepoint="w1").exists()  # due again
    delete_audited(a, user=admin_user, reason="duplicate enrolment")
    assert not DueWindow.objects.filter(patient_id=a.pk).exists()
    Patient.objects.filter(site=site, death_date__isnull=True).update(death_date=registry_today())
    assert not DueWindow.objects.filter(site_id=site.pk).exists()
    assert_worklist_follows_the_rules(nurse, site)


def test_an_imported_bundle_is_on_the_worklist_by_the_rules(nurse, site):
    """import_bundle writes with COPY: the statement-level triggers see the whole chunk."""
    call_command("import_bundle", str(DEMO_BUNDLE), stdout=StringIO())
    assert Patient.objects.exists()
    for patient_site in {p.site for p in Patient.objects.select_related("site")}:
        nurse.sites.add(patient_site)
        assert_worklist_follows_the_rules(nurse, patient_site)


def test_the_long_missed_list_is_one_limited_query_at_any_size(nurse, site, django_assert_num_queries):
    today = registry_today()
    cutoff = today - 30 * DAY
    for size in (5, 40):
        while Patient.objects.count() < size:
            treated(site, random.Random(Patient.objects.count()).randint(50, 600))
        with django_assert_num_queries(1):
            got = selectors.closed_before(nurse, cutoff, 50, today)
        overdue = [v for v in everything(selectors.worklist(nurse, today)) if v.group == selectors.OVERDUE]
        rank = list(selectors.VISIT_WINDOWS)
        expected = sorted(
            (v for v in overdue if v.closes < cutoff), key=lambda v: (v.closes, v.study_id, rank.index(v.timepoint))
        )
        assert len(expected) > 50 or size == 5
        assert got == expected[:50]
