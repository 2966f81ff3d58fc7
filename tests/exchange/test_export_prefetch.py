"""The export's second connection (exchange/exporter.py `_Prefetch`): outside a transaction the
largest files are COPYed on a second connection that imports the export's snapshot. The oracles:
the Python writer's bytes (a different method), and a visit saved while the export runs, which no
file of that export may show (one snapshot), while the next export shows it everywhere."""

import datetime
import io
import json
import threading
import zipfile

import pytest
from django.db import connection

from exchange import exporter
from exchange.exporter import ExportSpec, export_zip
from patients.models import Patient
from tests.exchange.zips import assert_wide_agrees_with_long, table
from tests.factories import FollowUpFactory, MedicationFactory

pytestmark = pytest.mark.django_db(transaction=True)  # the export is the outermost transaction


def prefetch_threads() -> int:
    return sum(t.name == "export-prefetch" and t.is_alive() for t in threading.enumerate())


def test_the_prefetched_files_are_the_bytes_the_python_writer_writes(demo_cohort, monkeypatch):
    used = []
    enter = exporter._Prefetch.__enter__
    monkeypatch.setattr(exporter._Prefetch, "__enter__", lambda self: used.append(len(self.jobs)) or enter(self))
    by_sql = zipfile.ZipFile(io.BytesIO(b"".join(export_zip(ExportSpec(), engine="sql"))))
    by_python = zipfile.ZipFile(io.BytesIO(b"".join(export_zip(ExportSpec(), engine="python"))))
    assert used == [len(exporter.PREFETCHED)]  # the second connection ran, once, for both files
    for name in [n for n in by_python.namelist() if n.endswith(".csv")]:
        assert by_sql.read(name) == by_python.read(name), name
    files = json.loads(by_sql.read("manifest.json"))["files"]
    assert files["medications.csv"] == json.loads(by_python.read("manifest.json"))["files"]["medications.csv"]
    assert_wide_agrees_with_long(by_sql)
    assert prefetch_threads() == 0


def test_a_visit_saved_while_the_export_runs_is_in_none_of_its_files(demo_cohort):
    patient = Patient.objects.get(study_id="PSP-0001")
    index = patient.procedures.get(procedure_number=1).procedure_date
    stream = export_zip(ExportSpec())
    head = next(stream)  # the snapshot is taken; the second connection starts later, after the first file

    def save_elsewhere():  # another user's save, committed on its own connection
        visit = FollowUpFactory(patient=patient, timepoint="m1", visit_date=index + datetime.timedelta(days=30))
        MedicationFactory(followup=visit, drug="tramadol", daily_dose="100")
        connection.close()

    writer = threading.Thread(target=save_elsewhere)
    writer.start()
    writer.join()
    during = zipfile.ZipFile(io.BytesIO(head + b"".join(stream)))
    after = zipfile.ZipFile(io.BytesIO(b"".join(export_zip(ExportSpec()))))

    def m1_of_psp_0001(zf):
        visits = [v for v in table(zf, "followups") if v["study_id"] == "PSP-0001" and v["timepoint"] == "m1"]
        meds = [m for m in table(zf, "medications") if m["study_id"] == "PSP-0001" and m["timepoint"] == "m1"]
        wide = next(w for w in table(zf, "analysis_wide") if w["study_id"] == "PSP-0001")
        return len(visits), len(meds), wide["day_m1"]

    assert m1_of_psp_0001(during) == (0, 0, "")
    assert m1_of_psp_0001(after) == (1, 1, "30")
    assert_wide_agrees_with_long(during)


def test_an_abandoned_download_stops_the_second_connection(demo_cohort, monkeypatch):
    started = threading.Event()
    enter = exporter._Prefetch.__enter__
    monkeypatch.setattr(exporter._Prefetch, "__enter__", lambda self: started.set() or enter(self))
    stream = export_zip(ExportSpec())
    while not started.is_set():  # read until the second connection has been opened
        next(stream)
    stream.close()  # what an abandoned StreamingHttpResponse does to the generator
    assert prefetch_threads() == 0
    assert not connection.in_atomic_block
    assert Patient.objects.count() == 10  # the export's connection answers
