"""Data-quality rules and completeness on a messy multi-site cohort, each compared with an
independent count from the bundle's own CSV rows (plus the damage the test does by hand)."""

import csv
import datetime
import json
from collections import Counter, defaultdict
from io import StringIO

import pytest
from django.core.management import call_command

from accounts.models import Site
from outcomes.models import FollowUp
from oversight import completeness, quality
from oversight.models import DataQuery
from patients.models import Patient
from procedures.models import Procedure
from registry import dates
from tests.bundles import write_bundle

pytestmark = pytest.mark.django_db
WINDOWS = {
    "baseline": (-14, 0),
    "post": (0, 3),
    "w1": (5, 10),
    "m1": (21, 45),
    "m3": (75, 105),
    "m6": (150, 210),
    "m12": (330, 400),
}  # the CRF's


def rows(folder, name):
    with (folder / f"{name}.csv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def day(text):
    return datetime.date.fromisoformat(text) if text else None


@pytest.fixture
def cohort(tmp_path):
    folder = write_bundle(tmp_path / "bundle", patients=60, seed=14)
    call_command("import_bundle", str(folder), stdout=StringIO())
    return folder


def expected_from_bundle(folder):
    """Each rule's hits from the CSV rows, written from the rule's wording (not from quality.py)."""
    visits = rows(folder, "followups")
    meds = Counter((m["study_id"], m["timepoint"]) for m in rows(folder, "medications"))
    counts = Counter()
    for v in visits:
        if v["status"] != "completed":
            continue
        answered = sum(v[f"odi_q{n}"] != "" for n in range(1, 11))
        counts["odi_unscored"] += answered < 9  # ODI_MIN_SECTIONS default
        counts["opioids_unrecorded"] += meds[(v["study_id"], v["timepoint"])] == 0
    leak_rows = Counter((r["study_id"], r["procedure_number"]) for r in rows(folder, "leakages"))
    for p in rows(folder, "procedures"):
        per_level = float(p["cement_volume_ml"]) / len(p["levels_treated"].split("|"))
        counts["cement_implausible"] += not 1.0 <= per_level <= 10.0
        counts["leakage_mismatch"] += (p["leakage"] == "yes") != (leak_rows[(p["study_id"], p["procedure_number"])] > 0)
    with_baseline = {v["study_id"] for v in visits if v["timepoint"] == "baseline"}
    indexed = {p["study_id"] for p in rows(folder, "procedures") if p["procedure_number"] == "1"}
    counts["baseline_missing"] = len(indexed - with_baseline)
    return counts


def test_each_rule_counts_what_an_independent_count_of_the_bundle_finds(cohort, monitor, client):
    expected = expected_from_bundle(cohort)
    # Damage the data the way legacy loads and direct fixes do (bypassing the services on purpose).
    bj, sh = (
        Patient.objects.filter(site__code="BJ").order_by("pk"),
        Patient.objects.filter(site__code="SH").order_by("pk"),
    )
    Patient.objects.filter(pk=sh[0].pk).update(mrn=f" {bj[0].mrn.lower()} ")  # same MRN, other site, typed differently
    expected["duplicate_mrn"] += 2
    no_leak = Procedure.objects.filter(leakage=False, leakages__isnull=True).order_by("pk")[:2]
    Procedure.objects.filter(pk__in=[p.pk for p in no_leak]).update(leakage=True)
    expected["leakage_mismatch"] += 2
    alive = Patient.objects.filter(death_date=None).exclude(pk__in=[bj[0].pk, sh[0].pk]).order_by("pk")
    movers = [p for p in alive if FollowUp.objects.filter(patient=p, timepoint="m1", status="completed").exists()]
    m1 = FollowUp.objects.get(patient=movers[0], timepoint="m1")
    index = Procedure.objects.get(patient=movers[0], procedure_number=1).procedure_date
    FollowUp.objects.filter(pk=m1.pk).update(visit_date=index + datetime.timedelta(days=60), deviation_note="")
    expected["visit_out_of_window"] += 1
    dying = movers[1]
    completed = sorted(FollowUp.objects.filter(patient=dying, status="completed").values_list("visit_date", flat=True))
    Patient.objects.filter(pk=dying.pk).update(death_date=completed[0])
    expected["visit_after_death"] += sum(d > completed[0] for d in completed)
    baseline = FollowUp.objects.filter(patient=movers[2], timepoint="baseline").first()
    if baseline:
        baseline.delete()
        expected["baseline_missing"] += 1
        if baseline.status == "completed":  # its own hits go with it
            expected["odi_unscored"] -= sum(getattr(baseline, f"odi_q{n}") is not None for n in range(1, 11)) < 9
            expected["opioids_unrecorded"] -= not baseline.medications.exists() if baseline.pk else 0
    none_taken = (
        FollowUp.objects.filter(status="completed", medications__isnull=True)
        .exclude(pk=getattr(baseline, "pk", None))
        .first()
    )
    FollowUp.objects.filter(pk=none_taken.pk).update(no_opioids=True)  # "none" recorded: no longer a hit
    expected["opioids_unrecorded"] -= 1

    hits = quality.run_rules(Site.objects.all())
    found = Counter(h.rule for h in hits)
    for rule in quality.RULES:
        assert found[rule] == expected[rule], (rule, found[rule], expected[rule])
    assert found["discharge_missing"] == 0  # the schema requires it; the rule stays for data loaded otherwise
    assert {h.study_id for h in hits if h.rule == "duplicate_mrn"} == {bj[0].study_id, sh[0].study_id}
    out = next(h for h in hits if h.rule == "visit_out_of_window")
    assert (out.study_id, out.record_pk, out.field) == (movers[0].study_id, m1.pk, "deviation_note")

    # per site and rule, on the page and in the CSV
    by_site = {r["site"]: dict(zip(quality.RULES, r["rules"], strict=True)) for r in quality.counts_by_site(hits)}
    assert sum(by_site[s]["cement_implausible"] for s in by_site) == expected["cement_implausible"]
    client.force_login(monitor)
    monitor.sites.add(*Site.objects.all())
    csv_rows = list(csv.DictReader(StringIO(client.get("/audit/quality.csv").content.decode())))
    assert Counter(r["rule"] for r in csv_rows) == found

    # queries from the rules (one site, to keep the test quick): one per hit, not twice on a second run
    gz = [h for h in hits if h.site_code == "GZ"]
    out_cmd = StringIO()
    call_command("run_quality_rules", "--site", "GZ", "--open-queries", stdout=out_cmd)
    assert f"queries opened: {len(gz)}" in out_cmd.getvalue() and gz
    opened = Counter(DataQuery.objects.values_list("rule_code", flat=True))
    assert opened == Counter(h.rule for h in gz)
    call_command("run_quality_rules", "--site", "GZ", "--open-queries", stdout=out_cmd)
    assert "queries opened: 0" in out_cmd.getvalue()


def completeness_from_bundle(folder, today):
    """Expected/completed/missed/overdue per site and timepoint from the CSV rows."""
    patients = {p["study_id"]: p for p in rows(folder, "patients")}
    stopped = {
        c["study_id"] for c in rows(folder, "consents") if c["withdrawal_scope"] in ("no_new_data", "remove_data")
    }
    index = {
        p["study_id"]: day(p["procedure_date"]) for p in rows(folder, "procedures") if p["procedure_number"] == "1"
    }
    status = {(v["study_id"], v["timepoint"]): v["status"] for v in rows(folder, "followups")}
    table = defaultdict(Counter)
    for sid, when in index.items():
        if sid in stopped:
            continue
        death = day(patients[sid]["death_date"])
        for tp, (_low, high) in WINDOWS.items():
            closes = when + datetime.timedelta(days=high)
            if closes >= today or (death and death <= closes):
                continue
            st = status.get((sid, tp))
            if st in ("deceased", "withdrawn"):
                continue
            key = (patients[sid]["site"], tp)
            table[key]["expected"] += 1
            table[key]["completed" if st == "completed" else "missed" if st in ("missed", "lost") else "overdue"] += 1
    return table


def test_completeness_by_site_matches_a_count_from_the_bundle(cohort, client, monitor):
    today = dates.today()
    expected = completeness_from_bundle(cohort, today)
    monitor.sites.add(*Site.objects.all())
    client.force_login(monitor)
    data = json.loads(client.get("/audit/completeness.json").content)
    seen = 0
    for site in data["sites"]:
        for t in site["timepoints"]:
            want = expected[(site["site"], t["timepoint"])]
            got = {k: t[k] for k in ("expected", "completed", "missed", "overdue")}
            assert got == {k: want[k] for k in got}, (site["site"], t["timepoint"])
            assert t["self_report_pending"] == 0
            if want["expected"]:
                assert t["completed_rate"] == round(100 * want["completed"] / want["expected"], 1)
            seen += want["expected"]
    assert seen == sum(c["expected"] for c in expected.values()) > 40
    page = client.get("/audit/completeness/")
    assert page.status_code == 200 and 'id="completeness-chart"' in page.content.decode()
    assert completeness.chart(completeness.by_site(Site.objects.all(), today))["labels"][0] == "Baseline"
