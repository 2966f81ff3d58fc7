"""The streamed import: chunks of patients keep the whole-bundle guarantees, and the trail it writes with
COPY is the one the services write (every created row, its values, a valid chain)."""

import datetime
import decimal
import shutil

import pytest

from audit import chain
from audit.models import AuditEvent
from exchange.importer import BundleError, import_bundle
from outcomes.models import FollowUp, Medication
from patients.models import Consent, Patient
from procedures.models import Complication, Leakage, Procedure
from tests.bundles import write_bundle
from tests.conftest import DEMO_BUNDLE

pytestmark = pytest.mark.django_db

MODELS = (Patient, Consent, Procedure, Leakage, Complication, FollowUp, Medication)


def plain(value):
    """A stored value as the trail writes it (dates ISO, decimals as text), worked out here by hand."""
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


def test_every_created_row_has_a_trail_entry_with_its_stored_values_and_the_chain_holds(tmp_path):
    folder = write_bundle(tmp_path / "bundle", patients=40, seed=5)
    import_bundle(folder, chunk_patients=7)  # several chunks
    for model in MODELS:
        entries = {int(e.object_pk): e for e in AuditEvent.objects.filter(action="create", model=model._meta.label)}
        rows = list(model.objects.all())
        assert len(entries) == len(rows), model.__name__
        for row in rows:
            entry = entries[row.pk]
            stored = {
                f.name: plain(getattr(row, f.attname))
                for f in model._meta.concrete_fields
                if f.name not in ("id", "version")
            }
            assert {k: v[1] for k, v in entry.changes.items()} == stored, (model.__name__, row.pk)
            assert all(v[0] is None for v in entry.changes.values())
            if model is not Medication:  # (its text shows the dose as typed, 40 rather than 40.000)
                assert entry.object_repr == str(row)[:200]
    patient = Patient.objects.select_related("site").first()
    entry = AuditEvent.objects.get(action="create", model="patients.Patient", object_pk=str(patient.pk))
    assert (entry.study_id, entry.site_code) == (patient.study_id, patient.site.code)
    report = chain.verify(chain.rows())
    assert report.broken is None and report.checked == AuditEvent.objects.count()


def test_a_problem_in_the_last_chunk_leaves_nothing_of_the_earlier_chunks(tmp_path):
    folder = write_bundle(tmp_path / "bundle", patients=30, seed=6)
    path = folder / "followups.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    last_id = max(line.split(",")[0] for line in lines[1:])
    at = max(i for i, line in enumerate(lines) if line.startswith(last_id + ",") and ",completed," in line)
    header = lines[0].split(",")
    cells = lines[at].split(",")
    cells[header.index("vas")] = "11"
    lines[at] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = AuditEvent.objects.count()
    with pytest.raises(BundleError) as caught:
        import_bundle(folder, chunk_patients=4)
    assert [str(p) for p in caught.value.problems] == [f"followups.csv, row {at + 1}, vas = '11': above the maximum 10"]
    assert all(not model.objects.exists() for model in MODELS)
    assert AuditEvent.objects.count() == before


def test_the_same_mrn_in_two_chunks_is_refused_naming_the_first_row(tmp_path):
    folder = tmp_path / "bundle"
    shutil.copytree(DEMO_BUNDLE, folder)
    path = folder / "patients.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    mrn = header.index("mrn")
    first, last = lines[1].split(","), lines[-1].split(",")
    last[mrn] = first[mrn]
    lines[-1] = ",".join(last)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(BundleError) as caught:
        import_bundle(folder, chunk_patients=2)
    assert [str(p) for p in caught.value.problems] == [
        f"patients.csv, row {len(lines)}, mrn = '{first[mrn]}': the same MRN is used by row 2 of the same site"
    ]
    assert not Patient.objects.exists()


def test_chunked_and_whole_imports_give_the_same_rows(tmp_path):
    folder = write_bundle(tmp_path / "bundle", patients=25, seed=8)
    import_bundle(folder, chunk_patients=3)
    chunked = {m.__name__: sorted(map(repr, m.objects.values_list(*_fields(m)))) for m in MODELS}
    for model in reversed(MODELS):
        model.objects.all().delete()
    import_bundle(folder, chunk_patients=10_000)
    whole = {m.__name__: sorted(map(repr, m.objects.values_list(*_fields(m)))) for m in MODELS}
    assert chunked == whole


def _fields(model):
    """Values that do not depend on primary keys (parents by their natural keys)."""
    skip = {"id", "patient", "procedure", "followup", "site", "consent_version", "version"}
    names = [f.name for f in model._meta.concrete_fields if f.name not in skip]
    parent = {
        Consent: ["patient__study_id"],
        Procedure: ["patient__study_id"],
        FollowUp: ["patient__study_id"],
        Leakage: ["procedure__patient__study_id", "procedure__procedure_number"],
        Complication: ["procedure__patient__study_id", "procedure__procedure_number"],
        Medication: ["followup__patient__study_id", "followup__timepoint"],
        Patient: ["site__code"],
    }[model]
    return [*parent, *names]
