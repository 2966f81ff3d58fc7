"""CDISC ODM 1.3.2 and REDCap files of an export: the ODM validates against the
vendored schema (xmllint) and holds each CSV cell; the REDCap records hold the
same values in REDCap's flat layout."""

import csv
import io
import shutil
import subprocess
import xml.etree.ElementTree as ET
import zipfile
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from exchange.exporter import ExportSpec, export_zip
from tests.bundles import write_bundle
from tests.exchange.zips import table

pytestmark = pytest.mark.django_db
SCHEMA = Path(__file__).parent / "odm1-3-2" / "ODM1-3-2.xsd"
NS = {"odm": "http://www.cdisc.org/ns/odm/v1.3"}


def export(tmp_path, **spec):
    """An export zip and the interchange files the command makes of it."""
    path = tmp_path / "export.zip"
    path.write_bytes(b"".join(export_zip(ExportSpec(**spec))))
    call_command("export_interchange", str(path), "--out", str(tmp_path / "out"), stdout=StringIO())
    files = {p.relative_to(tmp_path / "out").as_posix(): p.read_bytes() for p in (tmp_path / "out").rglob("*.*")}
    return zipfile.ZipFile(path), files


@pytest.mark.skipif(not shutil.which("xmllint"), reason="xmllint (libxml2-utils) is not installed")
@pytest.mark.parametrize("level", ["deidentified", "identified"])
def test_the_odm_file_validates_against_the_odm_1_3_2_schema(tmp_path, level):
    folder = write_bundle(tmp_path / "bundle", patients=25, seed=3)
    call_command("import_bundle", str(folder), stdout=StringIO())
    _, files = export(tmp_path, level=level, reason="test")
    path = tmp_path / "odm.xml"
    path.write_bytes(files["cdisc_odm.xml"])
    out = subprocess.run(
        ["xmllint", "--noout", "--nonet", "--schema", str(SCHEMA), str(path)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "validates" in out.stderr


def test_the_odm_file_holds_every_cell_of_the_long_files(demo_cohort, tmp_path):
    zf, files = export(tmp_path)
    root = ET.fromstring(files["cdisc_odm.xml"])
    assert root.get("ODMVersion") == "1.3.2" and root.get("FileType") == "Snapshot"
    subjects = root.findall(".//odm:SubjectData", NS)
    assert [s.get("SubjectKey") for s in subjects] == [p["study_id"] for p in table(zf, "patients")]
    # each visit: its event keyed by timepoint, each non-blank cell an ItemData
    for visit in table(zf, "followups"):
        subject = next(s for s in subjects if s.get("SubjectKey") == visit["study_id"])
        event = subject.find(f"odm:StudyEventData[@StudyEventRepeatKey='{visit['timepoint']}']", NS)
        group = event.find("odm:FormData[@FormOID='F.followups']/odm:ItemGroupData", NS)
        items = {i.get("ItemOID"): i.get("Value") for i in group.findall("odm:ItemData", NS)}
        assert items == {f"I.followups.{k}": v for k, v in visit.items() if v != ""}
    sex = root.find(".//odm:CodeList[@OID='CL.patients.sex']", NS)
    decoded = {i.get("CodedValue"): i.find("odm:Decode/odm:TranslatedText", NS).text for i in sex}
    assert decoded == {"M": "Male", "F": "Female"}
    vas = root.find(".//odm:ItemDef[@OID='I.followups.vas']", NS)
    assert vas.get("DataType") == "float"
    assert vas.find("odm:Question/odm:TranslatedText", NS).text == "Pain, visual analogue scale (0-10)"


def test_the_redcap_files_hold_the_records_in_the_flat_layout(demo_cohort, tmp_path):
    zf, files = export(tmp_path)
    dictionary = list(csv.DictReader(io.StringIO(files["redcap/data_dictionary.csv"].decode())))
    assert dictionary[0]["Variable / Field Name"] == "study_id"
    by_name = {d["Variable / Field Name"]: d for d in dictionary}
    assert (
        by_name["pati_sex"]["Field Type"] == "dropdown"
        and by_name["pati_sex"]["Choices, Calculations, OR Slider Labels"] == "M, Male | F, Female"
    )
    assert by_name["pati_pathological_fracture"]["Field Type"] == "yesno"
    assert by_name["foll_vas"]["Text Validation Type OR Show Slider Number"] == "number"
    assert by_name["proc_levels_treated"]["Field Type"] == "checkbox"
    records = list(csv.DictReader(io.StringIO(files["redcap/records.csv"].decode())))
    patients, visits, procedures = table(zf, "patients"), table(zf, "followups"), table(zf, "procedures")
    assert len([r for r in records if r["redcap_repeat_instrument"] == ""]) == len(patients)
    redcap_visits = [r for r in records if r["redcap_repeat_instrument"] == "followups"]
    assert [(r["study_id"], r["foll_timepoint"], r["foll_vas"]) for r in redcap_visits] == [
        (v["study_id"], v["timepoint"], v["vas"]) for v in visits
    ]
    first = next(r for r in records if r["study_id"] == patients[0]["study_id"] and not r["redcap_repeat_instrument"])
    assert first["pati_pathological_fracture"] == {"yes": "1", "no": "0"}[patients[0]["pathological_fracture"]]
    proc = next(r for r in records if r["redcap_repeat_instrument"] == "procedures")
    levels = set(procedures[0]["levels_treated"].split("|"))
    assert {c: proc[f"proc_levels_treated___{c.lower()}"] for c in ("S1", "S2", "S3")} == {
        c: "1" if c in levels else "0" for c in ("S1", "S2", "S3")
    }


def test_a_wide_only_export_is_refused_by_name(demo_cohort, tmp_path):
    from django.core.management.base import CommandError

    path = tmp_path / "wide.zip"
    path.write_bytes(b"".join(export_zip(ExportSpec(shape="wide"))))
    with pytest.raises(CommandError, match="long files"):
        call_command("export_interchange", str(path), "--out", str(tmp_path / "out"))


def test_redcap_records_round_trip_through_the_importer(tmp_path):
    """Identified export -> REDCap files -> empty registry -> import_redcap -> the same export."""
    from patients.models import Patient
    from tests.exchange.zips import without_record_ids

    folder = write_bundle(tmp_path / "bundle", patients=30, seed=7)
    call_command("import_bundle", str(folder), stdout=StringIO())
    first, _ = export(tmp_path, level="identified", reason="round trip")
    Patient.objects.all().delete()
    call_command(
        "import_redcap",
        str(tmp_path / "out" / "redcap" / "data_dictionary.csv"),
        str(tmp_path / "out" / "redcap" / "records.csv"),
        stdout=StringIO(),
    )
    second = zipfile.ZipFile(io.BytesIO(b"".join(export_zip(ExportSpec(level="identified", reason="again")))))
    for name in ("patients.csv", "consents.csv", "procedures.csv", "leakages.csv", "complications.csv",
                 "followups.csv", "medications.csv"):  # fmt: skip
        assert without_record_ids(first.read(name)) == without_record_ids(second.read(name)), name


def test_a_bad_redcap_cell_refuses_the_whole_import(demo_cohort, tmp_path):
    from django.core.management.base import CommandError

    from patients.models import Patient

    export(tmp_path, level="identified", reason="t")
    records = (tmp_path / "out" / "redcap" / "records.csv").read_text().splitlines()
    header = records[0].split(",")
    Patient.objects.all().delete()
    rows = list(csv.reader(io.StringIO("\n".join(records))))
    vas = header.index("foll_vas")
    visit = next(i for i, r in enumerate(rows) if r[1] == "followups" and r[vas])
    rows[visit][vas] = "eleven"
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    (tmp_path / "bad.csv").write_text(text.getvalue())
    err = StringIO()
    with pytest.raises(CommandError, match="refused"):
        call_command(
            "import_redcap",
            str(tmp_path / "out" / "redcap" / "data_dictionary.csv"),
            str(tmp_path / "bad.csv"),
            stdout=StringIO(),
            stderr=err,
        )
    assert "vas" in err.getvalue() and "eleven" in err.getvalue(), err.getvalue()
    assert Patient.objects.count() == 0  # all or nothing
