import datetime

import pytest
from django.core.management import call_command

from tests.factories import ConsentFactory, PatientFactory, ProcedureFactory

TODAY = datetime.date.today()


@pytest.fixture(autouse=True)
def _site_url(settings):
    # Django's test runner already swaps every mailer for its test mailbox (locmem);
    # the patient links point at the test server's name.
    settings.SITE_URL = "http://testserver"


def make_patient(site, *, days_since_procedure=30, email="rosa@example.org", full_name="Rosa Maria Tester", **consent):
    patient = PatientFactory(site=site, full_name=full_name, email=email)
    ConsentFactory(patient=patient, **consent)
    ProcedureFactory(patient=patient, procedure_date=TODAY - datetime.timedelta(days=days_since_procedure))
    return patient


@pytest.fixture
def patient(site):
    """A consented patient 30 days after her procedure: the 1-month window (21-45 days) is open."""
    return make_patient(site)


def run_worker() -> None:
    """The real database worker, for one bounded run: every ready task, then exit."""
    call_command("db_worker", "--batch", "--no-startup-delay", "--no-reload", "--interval", "0", verbosity=0)
