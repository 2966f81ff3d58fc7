"""The export cache (exchange/export_cache.py): the stored CSV text of each patient's rows against
the export's own queries formatting every cell (`cache=False`, the oracle, itself checked against
the Python writer in test_export_sql.py), byte for byte, after hostile text and after every kind of
change a nurse, an admin or an import makes."""

import csv
import datetime
import io
import json
import zipfile

import pytest
from django.db import connection, models
from django.db.models import F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import Site
from exchange import export_cache, exporter
from exchange.exporter import ExportSpec, export_zip
from outcomes.models import FollowUp, Medication
from patients.models import Consent, ConsentVersion, Patient
from procedures.models import Complication, Leakage, Procedure
from tests.exchange.test_export_sql import messy  # noqa: F401 (a fixture)
from tests.factories import LeakageFactory, MedicationFactory

pytestmark = pytest.mark.django_db

HOSTILE = [
    'say "hi", then go',
    "back\\slash",
    "tab\there",
    "two\nlines",
    "cr\rhere",
    "\\.",
    "=1+1",
    "\\n (not a line break)",
    "trailing backslash\\",
    'é🩻,"',
]


def export(cache: bool, **kwargs) -> tuple[zipfile.ZipFile, dict]:
    result = exporter.ExportResult()
    spec = ExportSpec(**{"shape": "both", "packages": False, **kwargs})  # the packages' files are made from these CSVs
    data = b"".join(export_zip(spec, result, engine="sql", cache=cache))
    return zipfile.ZipFile(io.BytesIO(data)), result.files


def assert_cache_agrees(**kwargs) -> zipfile.ZipFile:
    cached, cached_files = export(True, **kwargs)
    direct, direct_files = export(False, **kwargs)
    names = [n for n in direct.namelist() if n.endswith(".csv")]
    assert names == [n for n in cached.namelist() if n.endswith(".csv")]
    for name in names:
        assert cached.read(name) == direct.read(name), name
    assert cached_files == direct_files  # row counts and hashes
    return cached


def cached_members(**kwargs) -> set[str]:
    connection.ensure_connection()
    members = exporter.export_members(ExportSpec(**kwargs), "sql", connection.connection.cursor().mogrify)
    return {m.name for m in members if m.cached}


def test_a_deidentified_export_reads_the_cache_and_an_identified_one_never_does(messy):  # noqa: F811
    assert cached_members() == set(export_cache.cached_files())
    assert len(export_cache.cached_files()) == 8  # every file of patient rows, and the wide file
    assert cached_members(level="identified", reason="audit") == set()


def test_hostile_text_in_every_text_column_is_stored_as_copy_writes_it(messy):  # noqa: F811
    written = 0
    for model in exporter.MODELS.values():
        rows = list(model.objects.order_by("pk").values_list("pk", flat=True)[: len(HOSTILE)])
        for field in model._meta.concrete_fields:
            if not isinstance(field, models.CharField | models.TextField) or field.name in ("study_id", "timepoint"):
                continue
            if field.unique or field.choices or model is Site:  # codes: the dashboard's rows refuse others
                continue
            for pk, text in zip(rows, HOSTILE, strict=False):
                written += model.objects.filter(pk=pk).update(**{field.name: text[: field.max_length or None]})
    assert written > 100
    cached = assert_cache_agrees()
    texts = b"".join(cached.read(n) for n in cached.namelist() if n.endswith(".csv"))
    assert b"\\" in texts and b"\t" in texts and b'""' in texts  # the escapes came back through COPY's text format
    assert_cache_agrees(shape="wide", filters={"primary_tumour": Patient.objects.first().primary_tumour})


def test_every_kind_of_change_is_in_the_next_export(messy):  # noqa: F811
    assert_cache_agrees()
    patient = Patient.objects.filter(procedures__procedure_number=1, followups__isnull=False).order_by("pk").first()
    # the index procedure's date moves every day offset of her files
    Procedure.objects.filter(patient=patient, procedure_number=1).update(
        procedure_date=F("procedure_date") - datetime.timedelta(days=3)
    )
    assert_cache_agrees()
    # a visit's values, an opioid added and one removed, a leakage, a complication removed
    visit = FollowUp.objects.filter(patient=patient).first()
    FollowUp.objects.filter(pk=visit.pk).update(vas=7.5, odi_q3=4)
    MedicationFactory(followup=visit, drug="morphine", daily_dose=30)
    Medication.objects.filter(followup__patient__site=patient.site).order_by("pk").first().delete()
    LeakageFactory(procedure=Procedure.objects.get(patient=patient, procedure_number=1), site="venous")
    Complication.objects.order_by("pk").first().delete()
    assert_cache_agrees()
    # a renamed site and a relabelled consent version reach every patient of theirs
    Site.objects.filter(pk=patient.site_id).update(code="ZZ")
    ConsentVersion.objects.filter(pk=Consent.objects.filter(patient=patient).first().consent_version_id).update(
        version="9.9-relabelled"
    )
    assert_cache_agrees()
    # a patient's own row, a new study ID (her place in every file), and a patient deleted
    Patient.objects.filter(pk=patient.pk).update(study_id=f"{patient.site.code}-000000", ecog=4)
    assert_cache_agrees()
    other = Patient.objects.exclude(pk=patient.pk).order_by("pk").first()
    Medication.objects.filter(followup__patient=other).delete()
    FollowUp.objects.filter(patient=other).delete()
    Leakage.objects.filter(procedure__patient=other).delete()
    Complication.objects.filter(procedure__patient=other).delete()
    Procedure.objects.filter(patient=other).delete()
    assert_cache_agrees()


def test_a_cache_from_other_code_is_not_read_and_install_rewrites_it(messy):  # noqa: F811
    with connection.cursor() as cursor:
        cursor.execute(f"COMMENT ON FUNCTION {export_cache.SIGNATURE} IS 'written by an older release'")
        cursor.execute(f"UPDATE {export_cache.TABLE} SET body = 'stale\n'")  # what that code would have kept
    assert cached_members() == set()  # the export formats every cell instead
    export(True)  # and is right: compared with the Python writer in test_export_sql.py's engines test
    assert export(True)[0].read("patients.csv") == export(False)[0].read("patients.csv")
    assert export_cache.install() is True  # what `migrate` runs
    assert cached_members() == set(export_cache.cached_files())
    assert_cache_agrees()
    assert export_cache.install() is False  # the same code again: nothing rewritten


def test_the_cache_holds_one_row_per_patient_and_file_with_her_row_count(messy):  # noqa: F811
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT file, count(*), sum(rows) FROM {export_cache.TABLE} GROUP BY file")
        stored = {file: (patients, rows) for file, patients, rows in cursor.fetchall()}
    assert stored["patients.csv"] == (Patient.objects.count(), Patient.objects.count())
    assert stored["analysis_wide.csv"] == (Patient.objects.count(), Patient.objects.count())
    assert stored["followups.csv"][1] == FollowUp.objects.count()
    assert stored["followups.csv"][0] == Patient.objects.filter(followups__isnull=False).distinct().count()
    assert stored["medications.csv"][1] == Medication.objects.count()
    assert stored["leakages.csv"][1] == Leakage.objects.count()
    # an export's manifest counts the population's rows (the fixture's consented patients: all of them here)
    manifest = json.loads(export(True)[0].read("manifest.json"))
    assert manifest["files"]["followups.csv"]["rows"] <= FollowUp.objects.count()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30),
        min_size=1,
        max_size=6,
    )
)
def test_copys_text_format_is_read_back_to_the_stored_text(texts):
    # PostgreSQL's own escaping is the oracle: a row per text, as an export reads one per patient
    out = io.BytesIO()
    with connection.cursor() as cursor:
        values = ", ".join(["(%s)"] * len(texts))
        sql = cursor.mogrify(f"SELECT t FROM (VALUES {values}) v(t)", texts).decode()
        cursor.cursor.copy_expert(f"COPY ({sql}) TO STDOUT", out)
    assert export_cache.unescape(out.getvalue()) == "".join(texts).encode()


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.lists(
            st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8), max_size=4
        ),
        max_size=8,
    )
)
def test_csv_records_counts_the_rows_written_whatever_their_line_breaks(rows):
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\n").writerows([row or ["x"] for row in rows])
    assert export_cache.csv_records(out.getvalue().encode()) == len(rows)


@pytest.mark.django_db(transaction=True)
def test_two_saves_of_one_patient_at_once_take_turns_and_both_are_in_the_cache():
    # two nurses' transactions, each adding an opioid to a visit of the same patient: without the
    # refresh's row lock the second one's rewrite would collide with the rows the first committed
    from django.db import connections

    from tests.factories import FollowUpFactory, PatientFactory, ProcedureFactory

    patient = PatientFactory()
    ProcedureFactory(patient=patient)
    visits = [FollowUpFactory(patient=patient, timepoint=tp) for tp in ("baseline", "post")]
    params = connections["default"].get_connection_params()
    first, second = (connection.Database.connect(**params) for _ in range(2))
    insert = (
        "INSERT INTO outcomes_medication (followup_id, drug, daily_dose, route, version)"
        " VALUES (%s, 'morphine', 30, 'oral', 1)"
    )
    errors: list[BaseException] = []
    try:
        first.cursor().execute(insert, [visits[0].pk])  # its refresh holds the patient's row now

        def later() -> None:
            try:
                second.cursor().execute(insert, [visits[1].pk])  # waits for the first to commit
                second.commit()
            except BaseException as exc:
                errors.append(exc)

        import threading

        thread = threading.Thread(target=later)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive()  # waiting for the first transaction's lock
        first.commit()
        thread.join(10)
    finally:
        first.close()
        second.close()
    assert errors == []
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT rows FROM {export_cache.TABLE} WHERE file = 'medications.csv' AND patient_id = %s", [patient.pk]
        )
        assert cursor.fetchone() == (2,)


def test_a_population_of_ids_far_apart_goes_as_an_array_and_reads_the_same(messy, monkeypatch):  # noqa: F811
    assert export_cache.population_bits("{3,5}")[0] == 6  # bits 0..5
    far = f"{{3,{10**12}}}"
    assert export_cache.population_bits(far) == (0, far)  # not 125 GB of bits
    assert export_cache.population_bits("{}") == (0, "{}")
    by_bits = export(True)[0]
    monkeypatch.setattr(export_cache, "BITS_PER_PATIENT", -(10**9))  # every population as an array
    by_array = export(True)[0]
    for name in by_bits.namelist():
        if name.endswith(".csv"):
            assert by_bits.read(name) == by_array.read(name), name
