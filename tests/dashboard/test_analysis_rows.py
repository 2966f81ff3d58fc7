"""The dashboard reads outcomes.AnalysisRow, which database triggers rewrite in the statement that
changes a patient or any of her records: after every kind of write (services, deletions with a
reason, plain ORM saves and updates, leakages and complications through their procedure) the
packed rows equal the cohort computed from the records themselves through the ORM
(portable_cohort_columns), and the next summary shows the change: never stale."""

import datetime

import numpy as np
import pytest
from django.test import Client

from audit.services import delete_audited
from dashboard.selectors import cohort_columns, portable_cohort_columns
from outcomes.models import FollowUp
from outcomes.services import record_visit
from patients.models import Consent, Patient
from patients.services import withdraw_consent
from procedures.models import Complication, Procedure
from tests.dashboard.cohort import make_cohort
from tests.factories import ComplicationFactory, LeakageFactory

pytestmark = pytest.mark.django_db


def assert_rows_follow_the_records() -> None:
    for filters in ({}, {"approach": "interpedicular"}):
        rows, records = cohort_columns(None, filters), portable_cohort_columns(None, filters)
        assert list(rows.ids) == list(records.ids)
        for name in rows.columns.dtype.names:
            assert np.array_equal(rows[name], records[name], equal_nan=True), name
        assert (rows.excluded_withdrawn, rows.awaiting_consent) == (
            records.excluded_withdrawn,
            records.awaiting_consent,
        )


def test_every_kind_of_write_is_in_the_next_summary(nurse, admin_user, investigator):
    make_cohort(seed=21, patients=24)
    assert_rows_follow_the_records()
    client = Client()
    client.force_login(investigator)
    investigator.sites.set(Patient.objects.values_list("site", flat=True).distinct())

    visit = FollowUp.objects.filter(status="completed", timepoint="post", vas__isnull=False).first()
    before = client.get("/dashboard/summary.json").json()["outcomes"]["vas"]["post"]
    visit.vas = 0 if visit.vas != 0 else 1
    record_visit(visit=visit, user=nurse, reason="source says otherwise", expected_version=visit.version)
    after = client.get("/dashboard/summary.json").json()["outcomes"]["vas"]["post"]
    assert after["n"] == before["n"] and after["followup"]["mean"] != before["followup"]["mean"]
    assert_rows_follow_the_records()

    index = Procedure.objects.filter(procedure_number=1).order_by("pk")
    LeakageFactory(procedure=index[0], site="venous", symptomatic=True)
    ComplicationFactory(procedure=index[1], severity="major")
    assert_rows_follow_the_records()
    delete_audited(Complication.objects.order_by("pk").first(), user=admin_user, reason="entered twice")
    Procedure.objects.filter(pk=index[2].pk).update(approach="short_axis", cement_volume_ml=4.5)
    assert_rows_follow_the_records()

    analysed = cohort_columns(None, {}).ids.tolist()
    latest = [Consent.objects.filter(patient_id=pk).order_by("-signed_date", "-pk").first() for pk in analysed]
    consent = next(c for c in latest if c.withdrawn_date is None)
    patients_before = client.get("/dashboard/summary.json").json()["cohort"]["patients"]
    withdraw_consent(consent=consent, scope=Consent.WithdrawalScope.REMOVE_DATA, reason="asked", user=nurse)
    assert client.get("/dashboard/summary.json").json()["cohort"]["patients"] == patients_before - 1
    Patient.objects.filter(pk=index[4].patient_id).update(death_date=index[4].procedure_date + datetime.timedelta(1))
    FollowUp.objects.filter(patient=index[5].patient).delete()
    assert_rows_follow_the_records()
    delete_audited(index[6].patient, user=admin_user, reason="duplicate enrolment")
    assert_rows_follow_the_records()


def test_a_bulk_import_refreshes_each_chunk_once_and_leaves_no_deferral_behind():
    """import_bundle sends each chunk as several COPY statements and refreshes the derived rows once after
    them (outcomes.derived); the rows then equal the records, and a write after it refreshes at once."""
    from django.db import connection

    from exchange.importer import import_bundle
    from outcomes.models import AnalysisRow, DueWindow
    from tests.conftest import DEMO_BUNDLE

    import_bundle(DEMO_BUNDLE, chunk_patients=7)  # several chunks out of the demo's cohort
    assert AnalysisRow.objects.count() == Patient.objects.count() > 7
    assert_rows_follow_the_records()
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('outcomes.defer_refresh', true)")
        assert cursor.fetchone()[0] in (None, "", "off")
    # The same transaction goes on (the test's): a plain ORM write is in the rows at once.
    patient = Patient.objects.filter(death_date__isnull=True, procedures__isnull=False).first()
    windows = DueWindow.objects.filter(patient=patient).count()
    Patient.objects.filter(pk=patient.pk).update(death_date=patient.procedures.first().procedure_date)
    assert_rows_follow_the_records()
    assert windows > 0 and not DueWindow.objects.filter(patient=patient).exists()
