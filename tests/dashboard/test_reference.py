"""Every summary number against an independent reference written here.

The reference reads model instances one by one (slow, obvious), does exact
arithmetic with Decimal/Fraction, and uses scipy only for distributions and
the t test; it never calls dashboard.stats, the selector or the cohort
queries. Population (summary.md): the latest consent (signed date, then id)
says yes to registry use and no consent is withdrawn with "remove data";
survival as summary.md "Survival", with the Kaplan-Meier walk of
test_survival's reference (exact fractions, patients in time order).
"""

import datetime
import io
import itertools
import json
import math
import statistics
from collections import Counter
from fractions import Fraction

import pytest
from django.conf import settings
from django.core.management import call_command
from scipy import stats as sps

from accounts.models import Site
from outcomes.models import FollowUp
from patients.models import Patient
from tests.dashboard.cohort import make_cohort
from tests.dashboard.test_paper import assert_same
from tests.dashboard.test_survival import reference_summary as reference_survival
from tests.factories import UserFactory

TIMEPOINTS = ("post", "w1", "m1", "m3", "m6", "m12")
LEVEL_ORDER = ["L5", "S1", "S2", "S3", "S4", "S5", "coccyx"]


# ---- the reference -------------------------------------------------------


def spss_percentile(values, p):
    """SPSS HAVERAGE: position p(n+1), clamped to the first and last values."""
    xs = sorted(values)
    n = len(xs)
    pos = p * (n + 1)
    k = math.floor(pos)
    if k < 1:
        return float(xs[0])
    if k >= n:
        return float(xs[-1])
    return float(xs[k - 1] + (pos - k) * (xs[k] - xs[k - 1]))


def ref_location(values):
    if not values:
        return dict.fromkeys(("mean", "sd", "median", "q1", "q3"))
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else None,
        "median": spss_percentile(values, 0.5),
        "q1": spss_percentile(values, 0.25),
        "q3": spss_percentile(values, 0.75),
    }


def ref_wilcoxon(exact_diffs):
    """Signed-rank test, zeros dropped, average ranks for ties, normal approximation with
    tie correction, no continuity correction (what SPSS prints)."""
    d = [x for x in exact_diffs if x != 0]
    if not d:
        return None
    ordered = sorted(abs(x) for x in d)
    rank, start = {}, 0  # a run of equal values shares the mean of its positions start+1 .. start+len
    for value, run in itertools.groupby(ordered):
        length = len(list(run))
        rank[value] = start + (length + 1) / 2
        start += length
    n = len(d)
    w_plus = sum(rank[abs(x)] for x in d if x > 0)
    ties = Counter(ordered).values()
    var = n * (n + 1) * (2 * n + 1) / 24 - sum(t**3 - t for t in ties) / 48
    z = (w_plus - n * (n + 1) / 4) / math.sqrt(var)
    return float(2 * sps.norm.sf(abs(z)))


def ref_block(pairs):
    """pairs: list of (baseline, followup) as exact numbers (Decimal or Fraction)."""
    n = len(pairs)
    if n < 2:
        return {
            "n": n,
            "baseline": ref_location([float(b) for b, _ in pairs]),
            "followup": ref_location([float(f) for _, f in pairs]),
            "diff": {"mean": None, "sd": None, "ci95": None},
            "t": None,
            "p_ttest": None,
            "p_wilcoxon": None,
        }
    base = [float(b) for b, _ in pairs]
    follow = [float(f) for _, f in pairs]
    exact = [Fraction(f) - Fraction(b) for b, f in pairs]
    diffs = [float(x) for x in exact]
    mean_d, sd_d = statistics.fmean(diffs), statistics.stdev(diffs)
    half = sps.t.ppf(0.975, n - 1) * sd_d / math.sqrt(n)
    t = p = None
    if len(set(exact)) > 1:
        result = sps.ttest_rel(follow, base)
        t, p = float(result.statistic), float(result.pvalue)
    return {
        "n": n,
        "baseline": ref_location(base),
        "followup": ref_location(follow),
        "diff": {"mean": mean_d, "sd": sd_d, "ci95": [mean_d - half, mean_d + half]},
        "t": t,
        "p_ttest": p,
        "p_wilcoxon": ref_wilcoxon(exact),
    }


def ref_desc(values):
    if not values:
        return {"n": 0, "mean": None, "sd": None, "min": None, "max": None}
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else None,
        "min": min(values),
        "max": max(values),
    }


def exact_odi(visit):
    answers = [getattr(visit, f"odi_q{i}") for i in range(1, 11)]
    given = [a for a in answers if a is not None]
    if len(given) < settings.ODI_MIN_SECTIONS:
        return None
    return Fraction(sum(given) * 100, 5 * len(given))


def exact_value(visit, measure):
    if visit is None or visit.status != "completed":
        return None
    if measure == "vas":
        return visit.vas
    if measure == "odi":
        return exact_odi(visit)
    drugs = [m.drug for m in visit.medications.all()]
    if measure == "opioid_count":
        return len(drugs)
    # CDC 2022 oral MME factors (fentanyl patches per mcg/h); a dose by another route has no factor
    factors = {"codeine": "0.15", "hydrocodone": "1", "hydromorphone": "5", "methadone": "4.7", "morphine": "1",
               "oxycodone": "1.5", "oxymorphone": "3", "tapentadol": "0.4", "tramadol": "0.2", "fentanyl_td": "2.4"}  # fmt: skip
    meds = list(visit.medications.all())
    if any(m.drug not in factors or m.route != ("transdermal" if m.drug == "fentanyl_td" else "oral") for m in meds):
        return None
    return sum(Fraction(factors[m.drug]) * Fraction(m.daily_dose) for m in meds)


def whole_years(born, on):
    years = on.year - born.year
    if (on.month, on.day) < (born.month, born.day):
        years -= 1
    return years


def index_of(patient):
    """The index procedure (number 1), read from the patient's procedures (prefetched: one query for all)."""
    return next((proc for proc in patient.procedures.all() if proc.procedure_number == 1), None)


def ref_matches(patient, filters):
    index = index_of(patient)
    if filters.get("site") and patient.site.code != filters["site"]:
        return False
    if filters.get("primary_tumour") and patient.primary_tumour != filters["primary_tumour"]:
        return False
    if filters.get("approach") or filters.get("procedure_from") or filters.get("procedure_to"):
        if index is None:
            return False
        if filters.get("approach") and index.approach != filters["approach"]:
            return False
        if filters.get("procedure_from") and index.procedure_date < datetime.date.fromisoformat(
            filters["procedure_from"]
        ):
            return False
        if filters.get("procedure_to") and index.procedure_date > datetime.date.fromisoformat(filters["procedure_to"]):
            return False
    return True


def ref_removed(patient):
    return any(c.withdrawal_scope == "remove_data" for c in patient.consents.all())


def ref_consented(patient):
    consents = sorted(patient.consents.all(), key=lambda c: (c.signed_date, c.pk))
    return bool(consents) and consents[-1].scope_registry


def ref_survival(cohort):
    times, events = [], []
    for p in cohort:
        index = index_of(p)
        if index is None:
            continue
        if p.death_date is not None:
            times.append((p.death_date - index.procedure_date).days)
            events.append(True)
            continue
        alive = [d for proc in p.procedures.all() for d in (proc.procedure_date, proc.discharge_date) if d]
        alive += [v.visit_date for v in p.followups.all() if v.status == "completed"]
        alive += [d for c in p.consents.all() for d in (c.signed_date, c.withdrawn_date) if d]
        times.append((max(alive) - index.procedure_date).days)
        events.append(False)
    return reference_survival(times, events)


def reference_summary(filters, sites=None):
    # Every record of every patient in a few queries (prefetched), then read one patient at a time.
    everyone = Patient.objects.select_related("site").prefetch_related(
        "consents", "procedures__leakages", "procedures__complications", "followups__medications"
    )
    visible = [p for p in everyone if sites is None or p.site.code in sites]
    removed = [p for p in visible if ref_removed(p)]
    awaiting = [p for p in visible if not ref_removed(p) and not ref_consented(p)]
    left_out = {p.pk for p in removed} | {p.pk for p in awaiting}
    cohort = [p for p in visible if ref_matches(p, filters) and p.pk not in left_out]
    index = {p.pk: index_of(p) for p in cohort}
    procs = [(p, index[p.pk]) for p in cohort if index[p.pk] is not None]
    leak_rows = [(p.pk, leak) for p, proc in procs for leak in proc.leakages.all()]
    comp_rows = [(p.pk, c) for p, proc in procs for c in proc.complications.all()]

    outcomes = {m: {} for m in ("vas", "odi", "opioid_count", "mme_per_day")}
    responders, opioid = {}, {}
    visits_of = {p.pk: {v.timepoint: v for v in p.followups.all()} for p in cohort}
    for tp in TIMEPOINTS:
        pairs = {m: [] for m in outcomes}
        for p in cohort:
            visits = visits_of[p.pk]
            for m in outcomes:
                b, f = exact_value(visits.get("baseline"), m), exact_value(visits.get(tp), m)
                if b is not None and f is not None:
                    pairs[m].append((b, f))
        for m in outcomes:
            outcomes[m][tp] = ref_block(pairs[m])
        responders[tp] = {
            "vas_drop_ge_3": sum(b - f >= 3 for b, f in pairs["vas"]),
            "vas_drop_ge_30pct": sum(b - f > 0 and (b - f) * 10 >= 3 * b for b, f in pairs["vas"]),
            "odi_drop_ge_10": sum(b - f >= 10 for b, f in pairs["odi"]),
            "vas_of": len(pairs["vas"]),
            "odi_of": len(pairs["odi"]),
        }
        opioid[tp] = {
            "stopped": sum(b > 0 and f == 0 for b, f in pairs["opioid_count"]),
            "decreased": sum(0 < f < b for b, f in pairs["opioid_count"]),
            "unchanged": sum(f == b for b, f in pairs["opioid_count"]),
            "increased": sum(f > b for b, f in pairs["opioid_count"]),
            "of": len(pairs["opioid_count"]),
        }

    def pattern(proc):
        return "|".join(sorted(proc.levels_treated.split("|"), key=LEVEL_ORDER.index))

    return {
        "filters": filters,
        "cohort": {
            "patients": len(cohort),
            "excluded_withdrawn": len(removed),
            "awaiting_consent": len(awaiting),
            "procedures": sum(len(p.procedures.all()) for p in cohort),
        },
        "table1": {
            "age": ref_desc([whole_years(p.date_of_birth, p.enrolment_date) for p in cohort]),
            "sex": dict(Counter(p.sex for p in cohort)),
            "primary_tumour": dict(Counter(p.primary_tumour for p in cohort)),
            "levels_pattern": dict(Counter(pattern(proc) for _, proc in procs)),
            "lesions_total": sum(len(proc.levels_treated.split("|")) for _, proc in procs),
            "technical_success": {"n": sum(proc.technical_success for _, proc in procs), "of": len(procs)},
            "operation_time_min": ref_desc([proc.operation_time_min for _, proc in procs]),
            "cement_volume_ml": ref_desc([float(proc.cement_volume_ml) for _, proc in procs]),
            "hospital_stay_days": ref_desc([(proc.discharge_date - proc.admission_date).days for _, proc in procs]),
            "imaging_to_procedure_days": ref_desc([(proc.procedure_date - p.imaging_date).days for p, proc in procs]),
            "symptoms_to_procedure_months": ref_desc(
                [(proc.procedure_date - p.symptom_onset_date).days / 30.4375 for p, proc in procs]
            ),
            "leakage": {
                "patients": sum(proc.leakage for _, proc in procs),
                "of": len(procs),
                "by_site": dict(Counter(site for _, site in {(pk, leak.site) for pk, leak in leak_rows})),
                "symptomatic": len({pk for pk, leak in leak_rows if leak.symptomatic}),
            },
            "complications": {
                "major": len({pk for pk, c in comp_rows if c.severity == "major"}),
                "minor": len({pk for pk, c in comp_rows if c.severity == "minor"}),
                "by_type": dict(Counter(t for _, t in {(pk, c.type) for pk, c in comp_rows})),
            },
        },
        "outcomes": outcomes,
        "responders": responders,
        "opioid_change": opioid,
        "survival": ref_survival(cohort),
    }


# ---- the tests -------------------------------------------------------------

FILTERS = [
    {},
    {"site": "BB"},
    {"approach": "short_axis"},
    {"primary_tumour": "lung"},
    {"procedure_from": "2021-06-01", "procedure_to": "2022-12-31"},
    {"site": "AA", "approach": "interpedicular", "procedure_from": "2021-03-01"},
]
OPTION = {
    "site": "--site",
    "approach": "--approach",
    "primary_tumour": "--primary-tumour",
    "procedure_from": "--procedure-from",
    "procedure_to": "--procedure-to",
}


@pytest.fixture
def random_cohort(db):
    make_cohort(seed=7, patients=48)


# The cohort takes seconds to build: each test below builds it once and checks every case on it.


def test_the_command_equals_the_reference_under_every_filter(random_cohort):
    assert_the_cohort_has_the_hard_cases()
    for filters in FILTERS:
        args = [part for key, value in filters.items() for part in (OPTION[key], value)]
        out = io.StringIO()
        call_command("registry_summary", "--json", *args, stdout=out)
        summary = json.loads(out.getvalue())
        generated = summary.pop("generated_at")
        assert datetime.datetime.fromisoformat(generated).tzinfo == datetime.UTC
        expected = reference_summary(filters)
        assert summary["cohort"]["patients"] > 0, filters
        assert_same(summary, expected, f"{filters}$")
        if not filters:  # the whole cohort is big enough to estimate survival at every landmark
            assert summary["survival"]["deaths"] > 0
            assert all(at["survival"] is not None for at in summary["survival"]["at"].values())


def test_the_json_endpoint_is_scoped_to_a_nurses_sites(client, random_cohort):
    nurse = UserFactory(role="nurse", username="bb_nurse")
    nurse.sites.add(*Site.objects.filter(code__in=["BB", "CC"]))
    client.force_login(nurse)
    for filters in ({}, {"approach": "long_axis"}):
        response = client.get("/dashboard/summary.json", filters)
        assert response.status_code == 200
        summary = response.json()
        del summary["generated_at"]
        assert_same(summary, reference_summary(filters, sites={"BB", "CC"}), f"{filters}$")


def assert_the_cohort_has_the_hard_cases():
    visits = FollowUp.objects.all()
    patients = list(Patient.objects.all())
    assert any(ref_removed(p) for p in patients)
    assert any(ref_removed(p) and ref_consented(p) for p in patients)  # re-consent does not undo removal
    assert any(not p.consents.exists() for p in patients)
    assert any(not ref_removed(p) and not ref_consented(p) and p.consents.count() == 1 for p in patients)
    first_said_yes = {p.pk: [c.scope_registry for c in p.consents.order_by("signed_date", "pk")][:1] for p in patients}
    assert any(ref_consented(p) and first_said_yes[p.pk] == [False] for p in patients)  # re-consent after refusal
    assert any(not ref_consented(p) and first_said_yes[p.pk] == [True] for p in patients)  # a later refusal
    assert any(p.consents.count() == 2 and len({c.signed_date for c in p.consents.all()}) == 1 for p in patients)
    assert any(p.death_date and p.death_date == p.index_procedure_date for p in patients)
    assert visits.filter(status="missed").exists() and visits.filter(status="deceased").exists()
    assert visits.filter(status="completed", odi_score__isnull=True).exists()
    assert visits.filter(status="completed", mme_per_day__isnull=True).exists()
    assert Patient.objects.filter(procedures__isnull=True).exists()


def test_a_generated_synthetic_cohort_equals_the_reference(db):
    """`generate_synthetic` (the benchmarks' cohort) analysed by the command and by the reference: 0 differences."""
    out = io.StringIO()
    call_command("generate_synthetic", "--patients", "160", "--seed", "5", "--today", "2026-06-30", stdout=out)
    assert "160 patients" in out.getvalue()
    patients = list(Patient.objects.all())
    assert any(ref_removed(p) for p in patients) and any(not p.consents.exists() for p in patients)
    assert any(not ref_removed(p) and not ref_consented(p) for p in patients)
    assert FollowUp.objects.filter(status="completed", odi_score__isnull=True).exists()
    assert FollowUp.objects.filter(status="completed", mme_per_day__isnull=True).exists()
    assert Patient.objects.filter(death_date__isnull=False).exists()
    for filters in ({}, {"site": "BJ"}, {"approach": "interpedicular", "procedure_from": "2023-01-01"}):
        args = [part for key, value in filters.items() for part in (OPTION[key], value)]
        out = io.StringIO()
        call_command("registry_summary", "--json", *args, stdout=out)
        summary = json.loads(out.getvalue())
        del summary["generated_at"]
        assert summary["cohort"]["patients"] > 0, filters
        assert_same(summary, reference_summary(filters), f"{filters}$")
