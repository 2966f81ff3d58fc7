"""De-identification that holds against an investigator who tries: whole-year filters only, no calendar date
but years, no identifier or free text, no row key; an adversary combining every export it can get recovers no
date finer than about a year. Plus the two columns added later: medication route and patient e-mail."""

import csv
import datetime
import io
import json
import random
import re
import shutil
import zipfile
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from exchange.exporter import ExportSpec
from exchange.forms import ExportForm
from exchange.services import start_export
from outcomes.models import FollowUp, Medication
from tests.bundles import APPROACHES, SITES, TUMOURS, write_bundle
from tests.conftest import DEMO_BUNDLE

pytestmark = pytest.mark.django_db
DATE_LIKE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{8}|\d{2}/\d{2}/\d{4}")
IDENTIFYING = {  # source columns whose values must never appear in a de-identified export
    "patients": ("full_name", "mrn", "email", "notes", "primary_tumour_other"),
    "consents": ("obtained_by", "document_sha256", "withdrawal_reason"),
    "complications": ("description",),
    "followups": ("deviation_note",),
}


def read(path):
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def rewrite(path, rows):
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A messy bundle with e-mails, staff names, document hashes, deviation notes and routes added."""
    folder = write_bundle(tmp_path_factory.mktemp("deid") / "bundle", patients=150, seed=13)
    rng = random.Random(13)
    patients = read(folder / "patients.csv")
    for i, p in enumerate(patients):
        p["email"] = f"patient.{i}@mail.example"
    rewrite(folder / "patients.csv", patients)
    consents = read(folder / "consents.csv")
    for i, c in enumerate(consents):
        c["obtained_by"] = f"Nurse Staffname{i}"
        c["document_sha256"] = f"{rng.getrandbits(256):064x}"
    rewrite(folder / "consents.csv", consents)
    visits = read(folder / "followups.csv")
    for v in visits:
        if v["status"] == "completed" and rng.random() < 0.2:
            v["deviation_note"] = f"seen by Dr Person{rng.randint(1, 99)}"
    rewrite(folder / "followups.csv", visits)
    return folder


@pytest.fixture
def imported(source):
    call_command("import_bundle", str(source), stdout=StringIO())
    return source


def zip_of(spec):
    return zipfile.ZipFile(io.BytesIO(b"".join(start_export(spec, via="command"))))


def tables(zf):
    return {
        n: list(csv.reader(io.StringIO(zf.read(n).decode("utf-8"))))
        for n in zf.namelist()
        if n.endswith(".csv") and n != "data_dictionary.csv"
    }


def source_dates(folder):
    """Every calendar date of the source bundle, in the ways a file could spell it."""
    days = set()
    for f in folder.iterdir():
        for row in read(f):
            for value in row.values():
                try:
                    days.add(datetime.date.fromisoformat(value))
                except ValueError:
                    pass
    spelled = set()
    for d in days:
        spelled |= {d.isoformat(), d.strftime("%Y%m%d"), d.strftime("%d/%m/%Y"), d.strftime("%m/%d/%Y")}
    return spelled


# --------------------------------------------------------------------------- filters: whole calendar years only


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        ("2018-03-14", "2018-03-14", "procedure_from"),  # the one-day filter of the issue
        ("2018-01-01", "2018-06-30", "procedure_to"),
        ("2018-01-02", "2018-12-31", "procedure_from"),
        ("", "2019-12-30", "procedure_to"),
        ("2017-07-01", "", "procedure_from"),
    ],
)
def test_narrower_date_filters_are_refused_naming_the_field(imported, investigator, start, end, field):
    data = {"shape": "both", "level": "deidentified", "procedure_from": start, "procedure_to": end}
    form = ExportForm(data, user=investigator)
    assert not form.is_valid()
    assert "whole calendar years" in " ".join(form.errors[field])
    filters = {k: v for k, v in (("procedure_from", start), ("procedure_to", end)) if v}
    with pytest.raises(ValidationError, match="whole calendar years"):
        start_export(ExportSpec(filters=filters))
    args = [f"--{k.replace('_', '-')}={v}" for k, v in filters.items()]
    with pytest.raises(CommandError, match=f"--{field.replace('_', '-')}: a de-identified export"):
        call_command("export_bundle", "--out", "/tmp/never-written.zip", *args, stdout=StringIO())


def test_the_page_refuses_a_narrow_range_with_a_4xx_free_message_and_accepts_whole_years(
    client, investigator, imported
):
    client.force_login(investigator)
    page = client.post("/exports/", {"shape": "wide", "level": "deidentified", "procedure_from": "2018-03-14"})
    assert page.status_code == 200 and "whole calendar years" in page.content.decode()
    ok = client.post(
        "/exports/",
        {"shape": "wide", "level": "deidentified", "procedure_from": "2018-01-01", "procedure_to": "2019-12-31"},
    )
    assert ok["Content-Type"] == "application/zip"


# --------------------------------------------------------------------------- the adversary


def index_window(year, enrol_year, offsets, withdrawn, version_from, exported_on):
    """The calendar dates the index procedure can still be, from what a de-identified export shows.

    year: the index year (learnt from whole-year filters); enrol_year: enrolment_year; offsets: every day
    offset of the patient's procedures and visits (dates = index + offset); withdrawn: withdrawn_day offsets;
    version_from: first year of each consent version she signed; exported_on: the export's date (every
    recorded date is on or before it). Rules the adversary knows: enrolment is on or before every procedure
    and visit; a withdrawal is on or after the signing, itself in its version's period.
    """
    low, high = datetime.date(year, 1, 1), datetime.date(year, 12, 31)
    if offsets:
        low = max(low, datetime.date(enrol_year, 1, 1) - datetime.timedelta(days=min(offsets)))
        high = min(high, exported_on - datetime.timedelta(days=max(offsets)))
    for w in withdrawn:
        for f in version_from:
            low = max(low, datetime.date(f, 1, 1) - datetime.timedelta(days=w))
    return (high - low).days + 1


def test_the_adversary_oracle_pins_a_date_when_given_a_one_day_range():
    # a filter procedure_from = procedure_to would give a one-day window: the oracle can fail
    assert index_window(2018, 2018, [0, 2, 30], [], [2015], datetime.date(2026, 1, 1)) == 365
    low = high = datetime.date(2018, 3, 14)
    assert (high - low).days + 1 == 1


def test_an_investigator_combining_every_export_recovers_no_date_finer_than_a_year_nor_an_identifier(imported):
    source = imported
    investigator = None  # study-wide: sees every site of the bundle; the filters are the investigator's
    secrets = {
        row[col].strip()
        for file, cols in IDENTIFYING.items()
        for row in read(source / f"{file}.csv")
        for col in cols
        if row.get(col, "").strip()
    }
    assert any("@mail.example" in s for s in secrets) and any(s.startswith("Nurse ") for s in secrets)
    dates = source_dates(source)
    years = sorted({int(p["enrolment_date"][:4]) for p in read(source / "patients.csv")} | {2026})
    specs = [{}]
    specs += [{"procedure_from": f"{y}-01-01", "procedure_to": f"{y}-12-31"} for y in range(years[0], years[-1] + 1)]
    specs += [{"site": code} for code, _ in SITES] + [{"approach": a} for a in APPROACHES]
    specs += [{"primary_tumour": t} for t in TUMOURS]
    specs += [{"site": "BJ", "procedure_from": "2018-01-01", "procedure_to": "2019-12-31", "approach": "short_axis"}]
    index_year: dict[str, int] = {}
    seen_rows: dict[tuple[str, str], set[tuple[str, ...]]] = {}
    exported_on = None
    for filters in specs:
        zf = zip_of(ExportSpec(user=investigator, username="investigator", filters=filters))
        manifest = json.loads(zf.read("manifest.json"))
        exported_on = datetime.date.fromisoformat(manifest["exported_at"][:10])
        for key, value in manifest["filters"].items():
            assert key not in ("procedure_from", "procedure_to") or value[4:] in ("-01-01", "-12-31")
        for name, rows in tables(zf).items():
            header = rows[0]
            assert not {"record_id", "record_version"} & set(header), name
            assert not [h for h in header if h.endswith("_date")], name
            per_patient: dict[str, set[tuple[str, ...]]] = {}
            for row in rows[1:]:
                for cell in row:
                    text = cell.lstrip("'").strip()
                    assert text not in secrets, (name, cell)
                    assert not set(DATE_LIKE.findall(text)) & dates, (name, cell)
                per_patient.setdefault(row[0], set()).add(tuple(row))
            if name not in ("sites.csv", "consent_versions.csv"):
                # the same rows whatever the filter: a filter reveals membership only
                for sid, patient_rows in per_patient.items():
                    seen_rows.setdefault((name, sid), set()).add(frozenset(patient_rows))
        if "procedure_from" in filters and len(filters) == 2:
            for p in tables(zf)["patients.csv"][1:]:
                assert p[0] not in index_year
                index_year[p[0]] = int(filters["procedure_from"][:4])
    assert all(len(variants) == 1 for variants in seen_rows.values()), [k for k, v in seen_rows.items() if len(v) > 1][
        :3
    ]

    # the adversary's reconstruction, from one unfiltered export plus the index years
    zf = zip_of(ExportSpec(user=investigator, filters={}))
    removed = {c["study_id"] for c in read(source / "consents.csv") if c["withdrawal_scope"] == "remove_data"}
    assert len(tables(zf)["patients.csv"]) - 1 == 150 - len(removed)
    dicts = {n: [dict(zip(r[0], x, strict=True)) for x in r[1:]] for n, r in tables(zf).items()}
    version_years = {v["version"]: int(v["effective_from_year"]) for v in dicts["consent_versions.csv"]}
    offsets: dict[str, list[int]] = {}
    for name, column in (("procedures.csv", "procedure_day"), ("followups.csv", "visit_day")):
        for r in dicts[name]:
            if r[column]:
                offsets.setdefault(r["study_id"], []).append(int(r[column]))
    windows = []
    for p in dicts["patients.csv"]:
        sid = p["study_id"]
        consents = [c for c in dicts["consents.csv"] if c["study_id"] == sid]
        windows.append(
            index_window(
                index_year[sid],
                int(p["enrolment_year"]),
                offsets.get(sid, []),
                [int(c["withdrawn_day"]) for c in consents if c["withdrawn_day"]],
                [version_years[c["consent_version"]] for c in consents],
                exported_on,
            )
        )
    assert len(windows) == len(index_year) > 100
    # every index date (and so every date, all being offsets from it) is still one of 300+ calendar days:
    # what narrows the year at all is the baseline visit before the index and the follow-up before today
    assert min(windows) >= 300, sorted(windows)[:5]


# --------------------------------------------------------------------------- route and e-mail


def test_route_and_email_import_and_export_and_mme_follows_the_route(tmp_path, site):
    bundle = tmp_path / "bundle"
    shutil.copytree(DEMO_BUNDLE, bundle)  # no email, no route column: absent reads as blank
    meds = read(bundle / "medications.csv")
    for m in meds:
        m["route"] = ""
    first = next(m for m in meds if m["study_id"] == "PSP-0001" and m["timepoint"] == "baseline")
    first.update(drug="morphine", daily_dose="30", route="iv")  # PCA morphine: no CDC factor
    rewrite(bundle / "medications.csv", meds)
    patients = read(bundle / "patients.csv")
    for p in patients:
        p["email"] = ""
    patients[0]["email"] = "demo.one@mail.example"
    rewrite(bundle / "patients.csv", patients)
    call_command("import_bundle", str(bundle), stdout=StringIO())
    baseline = FollowUp.objects.get(patient__study_id="PSP-0001", timepoint="baseline")
    assert baseline.mme_per_day is None and baseline.opioid_count == 1
    assert set(Medication.objects.exclude(pk=baseline.medications.get().pk).values_list("route", flat=True)) <= {
        "oral",
        "transdermal",
    }
    other = FollowUp.objects.get(patient__study_id="PSP-0002", timepoint="baseline")
    assert other.mme_per_day == 80.0  # oxycodone 40 mg x 1.5 + tramadol 100 x 0.2 (CDC 2022), oral by default
    identified = zip_of(ExportSpec(level="identified", reason="check", username="t"))
    pats = list(csv.DictReader(io.StringIO(identified.read("patients.csv").decode())))
    assert pats[0]["email"] == "demo.one@mail.example"
    exported_meds = list(csv.DictReader(io.StringIO(identified.read("medications.csv").decode())))
    iv = next(m for m in exported_meds if m["route"] == "iv")
    assert (iv["drug"], iv["mme_factor"]) == ("morphine", "")
    assert next(m for m in exported_meds if m["drug"] == "oxycodone")["mme_factor"] == "1.5"
    deidentified = zip_of(ExportSpec())
    assert "email" not in deidentified.read("patients.csv").decode().splitlines()[0].split(",")
    assert b"demo.one@mail.example" not in b"".join(deidentified.read(n) for n in deidentified.namelist())  # .sav too
