"""import_bundle --update from a corrected identified export: rows matched by their registry key, only real
changes written (through the services, with the user and the reason), stale rows refused, all or nothing."""

import csv
import shutil
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from outcomes.models import FollowUp, Medication
from outcomes.services import record_visit
from patients.models import Patient
from procedures.models import Complication, Leakage, Procedure
from tests.bundles import write_bundle
from tests.conftest import DEMO_BUNDLE
from tests.exchange.zips import assert_update_round_trip, export

pytestmark = pytest.mark.django_db
REASON = "source document verification"


def read(path):
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def write(path, rows, header):
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def edit(folder, name, match, **changes):
    """Change cells of the one row of `name`.csv matching `match` (a dict of column: value)."""
    path = folder / f"{name}.csv"
    rows = read(path)
    hits = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(hits) == 1, (name, match, len(hits))
    hits[0].update(changes)
    write(path, rows, list(rows[0]))
    return hits[0]


def drop(folder, name, match):
    path = folder / f"{name}.csv"
    rows = read(path)
    header = list(rows[0])
    kept = [r for r in rows if not all(r[k] == v for k, v in match.items())]
    assert len(kept) == len(rows) - 1
    write(path, kept, header)


def update(folder, *extra, user="nurse"):
    out = StringIO()
    call_command("import_bundle", str(folder), "--update", "--reason", REASON, "--user", user, *extra, stdout=out)
    return out.getvalue()


def refused(folder, *extra, user="nurse"):
    before = AuditEvent.objects.count()
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("import_bundle", str(folder), "--update", "--reason", REASON, "--user", user, *extra, stderr=err)
    assert AuditEvent.objects.count() == before, "a refused update wrote to the trail"
    return err.getvalue()


@pytest.fixture
def cohort(tmp_path, nurse):
    """The demo cohort plus one complication (PSP-0002, onset 2017-05-13), imported."""
    source = tmp_path / "source"
    shutil.copytree(DEMO_BUNDLE, source)
    with (source / "complications.csv").open("a", encoding="utf-8") as fh:
        fh.write("PSP-0002,1,2017-05-13,urinary_retention,,1,yes,\n")
    call_command("import_bundle", str(source), stdout=StringIO())
    return source


@pytest.fixture
def exported(cohort, tmp_path):
    folder = tmp_path / "exported"
    export(level="identified", reason="corrections").extractall(folder)
    return folder


def trail_since(pk):
    return list(AuditEvent.objects.filter(pk__gt=pk).exclude(action="import").order_by("pk"))


def last_pk():
    return AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def test_update_needs_a_reason_and_an_existing_user(exported):
    with pytest.raises(CommandError, match="--reason"):
        call_command("import_bundle", str(exported), "--update", "--user", "nurse", stdout=StringIO())
    with pytest.raises(CommandError, match="--user"):
        call_command("import_bundle", str(exported), "--update", "--reason", "r", stdout=StringIO())
    with pytest.raises(CommandError, match="no active registry user"):
        call_command("import_bundle", str(exported), "--update", "--reason", "r", "--user", "ghost")


def test_an_unchanged_bundle_writes_nothing_bumps_nothing_and_exports_identically(exported, tmp_path):
    versions = sorted(FollowUp.objects.values_list("pk", "version"))
    assert assert_update_round_trip(tmp_path, "nurse") == 0
    assert sorted(FollowUp.objects.values_list("pk", "version")) == versions


def test_decimals_retyped_as_integers_are_no_change(exported):
    edit(exported, "followups", {"study_id": "PSP-0001", "timepoint": "baseline"}, vas="6")  # 6.0 in the registry
    edit(exported, "medications", {"study_id": "PSP-0001", "timepoint": "baseline"}, daily_dose="200.000")
    start = last_pk()
    assert "Audit trail entries written: 0" in update(exported)
    assert trail_since(start) == [] and not AuditEvent.objects.filter(pk__gt=start).exists()


def test_a_dose_an_onset_date_and_a_leakage_give_exactly_those_changes_with_the_user(exported, nurse):
    dose = edit(exported, "medications", {"study_id": "PSP-0001", "timepoint": "baseline"}, daily_dose="150")
    onset = edit(exported, "complications", {"study_id": "PSP-0002"}, onset_date="2017-05-14")
    edit(exported, "procedures", {"study_id": "PSP-0002"}, leakage="no")
    leak = next(r for r in read(exported / "leakages.csv") if r["study_id"] == "PSP-0002")
    drop(exported, "leakages", {"study_id": "PSP-0002"})
    start = last_pk()
    update(exported, "--remove-missing")

    events = trail_since(start)
    assert all(e.username == "nurse" and e.user == nurse and e.reason == REASON for e in events)
    got = sorted((e.action, e.model, e.object_pk, sorted(e.changes)) for e in events)
    visit = FollowUp.objects.get(patient__study_id="PSP-0001", timepoint="baseline")
    procedure = Procedure.objects.get(patient__study_id="PSP-0002")
    assert got == sorted(
        [
            ("update", "outcomes.Medication", dose["record_id"], ["daily_dose"]),
            ("update", "outcomes.FollowUp", str(visit.pk), ["mme_per_day"]),  # 40 -> 30 follows the dose
            ("update", "procedures.Complication", onset["record_id"], ["onset_date"]),
            (
                "delete",
                "procedures.Leakage",
                leak["record_id"],
                ["procedure", "site", "symptomatic", "treatment_required"],
            ),
            ("update", "procedures.Procedure", str(procedure.pk), ["leakage"]),
        ]
    )
    med = Medication.objects.get(pk=dose["record_id"])
    assert med.daily_dose == Decimal(150) and med.version == 2
    assert visit.mme_per_day == pytest.approx(150 * 0.2)  # CDC 2022: tramadol 0.2 MME per mg
    assert Complication.objects.get(pk=onset["record_id"]).onset_date.isoformat() == "2017-05-14"
    assert not Leakage.objects.filter(procedure=procedure).exists() and procedure.leakage is False
    assert Medication.objects.count() == 33 and Complication.objects.count() == 1  # no duplicates
    changes = {e.model: e.changes for e in events if e.action == "update"}
    assert changes["procedures.Complication"] == {"onset_date": ["2017-05-13", "2017-05-14"]}
    assert changes["procedures.Procedure"] == {"leakage": [True, False]}
    # untouched rows kept their versions
    assert set(Leakage.objects.values_list("version", flat=True)) == {1}
    assert FollowUp.objects.exclude(pk=visit.pk).filter(version__gt=1).count() == 0


def test_a_left_out_row_is_kept_without_remove_missing_and_the_flag_must_then_agree(exported):
    drop(exported, "leakages", {"study_id": "PSP-0002"})
    assert "Audit trail entries written: 0" in update(exported)  # leakage = yes, the row kept
    assert Leakage.objects.filter(procedure__patient__study_id="PSP-0002").count() == 1
    edit(exported, "procedures", {"study_id": "PSP-0002"}, leakage="no")
    report = refused(exported)
    assert (
        "procedures.csv, row 3, leakage = 'no': leakage = no, but the registry keeps 1 leakage row of this procedure"
        in report
    )
    assert "--remove-missing" in report


def test_a_new_row_has_no_record_id_and_is_added_once(exported):
    with (exported / "medications.csv").open("a", encoding="utf-8") as fh:
        header = read(exported / "medications.csv")[0].keys()
        fh.write(
            ",".join(
                {"study_id": "PSP-0001", "timepoint": "post", "drug": "morphine", "daily_dose": "10"}.get(h, "")
                for h in header
            )
            + "\r\n"
        )
    start = last_pk()
    update(exported)
    post = FollowUp.objects.get(patient__study_id="PSP-0001", timepoint="post")
    assert [(m.drug, m.daily_dose, m.route) for m in post.medications.all()] == [("morphine", Decimal(10), "oral")]
    assert post.mme_per_day == 10.0 and post.opioid_count == 1
    assert sorted((e.action, e.model) for e in trail_since(start)) == [
        ("create", "outcomes.Medication"),
        ("update", "outcomes.FollowUp"),
    ]


def test_a_row_a_nurse_saved_after_the_export_is_refused_and_listed(exported, nurse):
    visit = FollowUp.objects.get(patient__study_id="PSP-0003", timepoint="post")
    visit.vas = Decimal("4.0")
    record_visit(visit=visit, user=nurse, reason="typo", expected_version=1)  # the nurse's edit: version 2
    row = edit(exported, "followups", {"study_id": "PSP-0003", "timepoint": "post"}, vas="5.0")
    edit(exported, "medications", {"study_id": "PSP-0001", "timepoint": "baseline"}, daily_dose="150")
    line = [r["record_id"] for r in read(exported / "followups.csv")].index(row["record_id"]) + 2
    report = refused(exported)
    assert (
        f"followups.csv, row {line}, record_version = '1': changed in the registry since the export: version 1 now 2"
        in report
    )
    assert FollowUp.objects.get(pk=visit.pk).vas == Decimal("4.0")  # her value stands
    assert Medication.objects.get(pk=read(exported / "medications.csv")[0]["record_id"]).daily_dose == 200


def test_a_bundle_without_row_keys_cannot_update(cohort):
    report = refused(DEMO_BUNDLE)
    assert "--update needs the record_id and record_version columns of an identified export" in report


def test_an_update_that_breaks_the_case_is_refused_at_its_row(exported):
    # procedure 1 of PSP-0001 moved 17 days later: its post visit would be 16 days before it
    edit(exported, "procedures", {"study_id": "PSP-0001"}, procedure_date="2017-04-01", discharge_date="2017-04-05")
    report = refused(exported)
    assert (
        "followups.csv, row 3, visit_date = '2017-03-17': The Post-procedure visit (2017-03-17) is before the index "
        "procedure (2017-04-01)" in report
    )
    assert Procedure.objects.get(patient__study_id="PSP-0001").procedure_date.isoformat() == "2017-03-15"


def move_procedure_and_post_visit_a_week_later(exported, note=""):
    edit(exported, "procedures", {"study_id": "PSP-0001"}, procedure_date="2017-03-22", discharge_date="2017-03-27")
    edit(
        exported,
        "followups",
        {"study_id": "PSP-0001", "timepoint": "post"},
        visit_date="2017-03-24",
        deviation_note=note,
    )


def test_corrections_that_hold_together_land_together_whatever_their_order(exported):
    # written one by one the visit (with its note) must land before the procedure; the importer finds that order
    move_procedure_and_post_visit_a_week_later(exported, note="seen on the ward before the repeat imaging")
    update(exported)
    assert FollowUp.objects.get(patient__study_id="PSP-0001", timepoint="post").visit_date.isoformat() == "2017-03-24"
    assert Procedure.objects.get(patient__study_id="PSP-0001").procedure_date.isoformat() == "2017-03-22"


def test_corrections_valid_only_together_land_in_one_import(exported):
    move_procedure_and_post_visit_a_week_later(exported)  # the final case is valid (post visit 2 days after)
    update(exported)
    assert FollowUp.objects.get(patient__study_id="PSP-0001", timepoint="post").visit_date.isoformat() == "2017-03-24"


def test_an_unchanged_messy_bundle_of_200_patients_writes_no_trail_entry(tmp_path, nurse):
    write_bundle(tmp_path / "messy", patients=200, seed=5)
    call_command("import_bundle", str(tmp_path / "messy"), stdout=StringIO())
    assert Patient.objects.count() == 200
    assert assert_update_round_trip(tmp_path, "nurse") == 0
