"""The read replica (registry/replica.py): which alias each page's queries use.

The test settings add the alias "replica" as a MIRROR of the test database (a second
connection to the same database), and these tests point REPORTING_DATABASE at it. The
rows must then be committed for the second connection to see them, hence transactional
tests. The oracle is the rule in README "How the registry grows": the dashboard, the
summary, the report and the export read the replica; log-in, sessions, data entry, the
worklist, the patient page and every write stay on the primary.
"""

import datetime
import io
import zipfile

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import Site
from exchange import exporter
from exchange.models import ExportLog
from outcomes.models import FollowUp
from registry.replica import ReplicaRouter, read_alias, reporting_reads, reporting_stream
from tests.conftest import DEMO_BUNDLE
from tests.factories import ConsentFactory, PatientFactory, ProcedureFactory

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "replica"])

CLINICAL_TABLES = ("patients_", "procedures_", "outcomes_")


@pytest.fixture
def on_replica(settings):
    settings.REPORTING_DATABASE = "replica"
    yield
    connections["replica"].close()


@pytest.fixture
def cohort(db):
    from exchange.importer import import_bundle

    return import_bundle(DEMO_BUNDLE)


def queries(run):
    """(SQL on the primary, SQL on the replica) of `run()`, and its result."""
    with CaptureQueriesContext(connections["default"]) as primary, CaptureQueriesContext(connections["replica"]) as rep:
        result = run()
    return [q["sql"] for q in primary.captured_queries], [q["sql"] for q in rep.captured_queries], result


def reads_clinical(sqls):
    return [sql for sql in sqls if any(table in sql for table in CLINICAL_TABLES)]


def writes(sqls):
    return [sql for sql in sqls if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]


@pytest.mark.parametrize("url", ["/dashboard/", "/dashboard/summary.json", "/dashboard/report/"])
def test_the_dashboard_summary_and_report_read_the_clinical_rows_from_the_replica(
    client, cohort, investigator, on_replica, url
):
    client.force_login(investigator)
    primary, replica, response = queries(lambda: client.get(url))
    assert response.status_code == 200
    if url.endswith(".json"):
        assert response.json()["cohort"]["patients"] == 10  # the paper's ten cases, read through the replica
    assert reads_clinical(replica), "the cohort is read from the replica"
    assert not reads_clinical(primary), primary  # the primary serves only the session and the user
    assert not writes(replica)


def test_the_export_streams_from_the_replica_and_logs_on_the_primary(
    client, cohort, investigator, on_replica, monkeypatch
):
    client.force_login(investigator)
    second = []  # the aliases whose settings the export's second connection (exporter._Prefetch) used
    enter = exporter._Prefetch.__enter__
    monkeypatch.setattr(
        exporter._Prefetch, "__enter__", lambda self: second.append(self.connection.alias) or enter(self)
    )

    def download():
        response = client.post("/exports/", {"shape": "both", "level": "deidentified"})
        return response, b"".join(response.streaming_content)  # the body is read after the view returned

    primary, replica, (response, body) = queries(download)
    assert response.status_code == 200
    patients = zipfile.ZipFile(io.BytesIO(body)).read("patients.csv").decode().splitlines()
    assert len(patients) == 1 + 10
    copies = [sql for sql in replica if sql.startswith("COPY (")]
    # nine bundle files and the wide file from one snapshot on the replica: the two largest on a
    # second connection to it that imported the snapshot, the others on Django's
    assert len(copies) == 10 - len(exporter.PREFETCHED) and second == ["replica"]
    assert not reads_clinical(primary), primary
    assert not writes(replica)
    assert any("exchange_exportlog" in sql for sql in writes(primary))  # the log entry and its completion
    assert ExportLog.objects.get().row_counts["patients.csv"] == 10


def test_the_nurses_pages_and_a_saved_visit_never_touch_the_replica(client, nurse, site, on_replica):
    today = datetime.date.today()
    patient = PatientFactory(site=site, enrolment_date=today - datetime.timedelta(days=10))
    ConsentFactory(patient=patient)
    ProcedureFactory(patient=patient, procedure_date=today - datetime.timedelta(days=2))
    client.force_login(nurse)
    visit = {
        "status": "completed",
        "visit_date": today.isoformat(),
        "vas": "6.5",
        **{f"odi_q{n}": "2" for n in range(1, 11)},
        **{"med-TOTAL_FORMS": "0", "med-INITIAL_FORMS": "0", "med-MIN_NUM_FORMS": "0", "med-MAX_NUM_FORMS": "1000"},
    }

    def work():
        pages = [
            client.get(reverse("patients:worklist")),
            client.get(reverse("patients:detail", args=[patient.study_id])),
            client.post(reverse("outcomes:visit", args=[patient.study_id, "post"]), visit),
        ]
        pages.append(client.get(pages[-1].url))  # the page she lands on after saving shows her save
        return pages

    primary, replica, pages = queries(work)
    assert [p.status_code for p in pages] == [200, 200, 302, 200]
    assert replica == []
    assert any("outcomes_followup" in sql for sql in writes(primary))
    assert FollowUp.objects.get().vas == 6.5


def test_inside_a_reporting_context_reads_go_to_the_replica_and_writes_to_the_primary(on_replica, site):
    with reporting_reads() as alias:
        assert alias == read_alias() == "replica"
        primary, replica, found = queries(lambda: list(Site.objects.values_list("code", flat=True)))
        assert found == ["PSP"] and replica and not primary
        primary, replica, _ = queries(lambda: Site.objects.create(code="NEW", name="New"))
        assert writes(primary) and not replica
    assert read_alias() == "default"  # the context ends with the block


def test_a_streamed_body_reads_the_replica_at_each_step_and_never_between_steps(on_replica):
    def body():
        yield read_alias()
        yield read_alias()

    stream = reporting_stream(body())
    assert next(stream) == "replica"
    assert read_alias() == "default"  # between two chunks other code of the thread reads the primary
    assert list(stream) == ["replica"]


def test_without_a_replica_the_reporting_reads_stay_on_the_primary(settings):
    settings.REPORTING_DATABASE = "default"
    with reporting_reads() as alias:
        assert alias == "default"


def test_nothing_is_migrated_or_written_on_the_replica():
    router = ReplicaRouter()
    assert router.allow_migrate("default", "patients") and not router.allow_migrate("replica", "patients")
    with reporting_reads():
        assert router.db_for_write(FollowUp) == "default"
