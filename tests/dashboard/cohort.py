"""A random multi-site cohort for the dashboard tests, built with the shared factories.

Several sites and approaches, deaths, missed visits, skipped ODI sections
(8 answered → no score), buprenorphine (→ unknown MME), patients without a
procedure, second procedures, "remove data" and "no new data" withdrawals,
ties and zero differences (one-decimal VAS drawn from a small set). Consent
histories: none, a refusal, a re-consent after a refusal, a later refusal, two
records signed the same day (the later id decides), a re-consent after "remove
data". Survival: deaths (some on the day of the procedure) and follow-up to a
year, censored at visits, discharges or consent dates.
"""

import datetime
import random
from decimal import Decimal

from tests.factories import (
    ComplicationFactory,
    ConsentFactory,
    FollowUpFactory,
    LeakageFactory,
    MedicationFactory,
    PatientFactory,
    ProcedureFactory,
    SiteFactory,
)

SITES = ("AA", "BB", "CC")
APPROACHES = ("interpedicular", "short_axis", "long_axis", "transiliac")
TUMOURS = ("lung", "liver", "breast", "prostate", "other")
PATTERNS = ("S1", "S1|S2", "S2|S3", "S1|S2|S3", "L5|S1", "S2")
LEAK_SITES = ("presacral", "foraminal", "venous", "sacral_canal")
COMPLICATIONS = ("urinary_retention", "nerve_root_injury", "csf_leak", "wound_hematoma", "other")
DRUGS = ("morphine", "oxycodone", "tramadol", "fentanyl_td", "codeine", "buprenorphine")
FOLLOWUP_DAYS = {"post": 1, "w1": 7, "m1": 30, "m3": 90, "m6": 180, "m12": 365}
CONSENT_HISTORIES = ("usual", "none", "refused", "reconsented", "revoked", "same_day", "removed_then_reconsented")
VAS_STEPS = [Decimal(v) / 10 for v in range(0, 101, 7)] + [Decimal("8.2"), Decimal("5.2"), Decimal("7.0")]


def make_cohort(seed: int = 7, patients: int = 36) -> None:
    rng = random.Random(seed)
    sites = [SiteFactory(code=code) for code in SITES]
    for i in range(patients):
        _patient(rng, rng.choice(sites), i)


def _patient(rng: random.Random, site, i: int) -> None:
    enrolled = datetime.date(2021, 1, 1) + datetime.timedelta(days=rng.randint(0, 900))
    tumour = rng.choice(TUMOURS)
    patient = PatientFactory(
        site=site,
        enrolment_date=enrolled,
        date_of_birth=enrolled - datetime.timedelta(days=rng.randint(30 * 365, 85 * 365)),
        sex=rng.choice("MF"),
        primary_tumour=tumour,
        primary_tumour_other="melanoma" if tumour == "other" else "",
        symptom_onset_date=enrolled - datetime.timedelta(days=rng.randint(5, 300)),
        imaging_date=enrolled - datetime.timedelta(days=rng.randint(0, 20)),
    )
    _consents(rng, patient, enrolled, CONSENT_HISTORIES[1 + (i // 4) % 6] if i % 4 == 3 else "usual")
    if i % 11 == 5:  # enrolled, not treated yet
        FollowUpFactory(patient=patient, vas=rng.choice(VAS_STEPS))
        return
    procedure = _procedure(rng, patient, enrolled + datetime.timedelta(days=rng.randint(1, 6)))
    if rng.random() < 0.15:
        ProcedureFactory(
            patient=patient,
            procedure_number=2,
            procedure_date=procedure.procedure_date + datetime.timedelta(days=60),
            approach=rng.choice(APPROACHES),
            leakage=True,
        )
    if i % 13 == 6 or rng.random() < 0.25:
        after = 0 if i % 13 == 6 else rng.randint(20, 300)  # some die on the day of the procedure
        patient.death_date = procedure.procedure_date + datetime.timedelta(days=after)
        patient.save()
    _visits(rng, patient, procedure.procedure_date)


def _consents(rng: random.Random, patient, enrolled: datetime.date, history: str) -> None:
    later = enrolled + datetime.timedelta(days=rng.randint(10, 400))
    if history == "usual":
        withdrawal = rng.choices(["", "remove_data", "no_new_data", "no_contact"], weights=[7, 1, 1, 1])[0]
        ConsentFactory(
            patient=patient,
            withdrawn_date=enrolled + datetime.timedelta(days=rng.randint(30, 500)) if withdrawal else None,
            withdrawal_scope=withdrawal,
        )
    elif history == "refused":
        ConsentFactory(patient=patient, scope_registry=False)
    elif history == "reconsented":
        ConsentFactory(patient=patient, scope_registry=False)
        ConsentFactory(patient=patient, signed_date=later, scope_registry=True)
    elif history == "revoked":
        ConsentFactory(patient=patient, scope_registry=True)
        ConsentFactory(patient=patient, signed_date=later, scope_registry=False)
    elif history == "same_day":
        first = rng.random() < 0.5
        ConsentFactory(patient=patient, scope_registry=first)
        ConsentFactory(patient=patient, scope_registry=not first)
    elif history == "removed_then_reconsented":
        ConsentFactory(patient=patient, withdrawn_date=later, withdrawal_scope="remove_data")
        ConsentFactory(patient=patient, signed_date=later + datetime.timedelta(days=5))


def _procedure(rng: random.Random, patient, day: datetime.date):
    procedure = ProcedureFactory(
        patient=patient,
        procedure_date=day,
        approach=rng.choice(APPROACHES),
        levels_treated=rng.choice(PATTERNS),
        cement_volume_ml=Decimal(rng.randint(20, 140)) / 10,
        operation_time_min=rng.randint(25, 90),
        technical_success=rng.random() < 0.9,
        leakage=rng.random() < 0.35,
        admission_date=day - datetime.timedelta(days=rng.randint(0, 3)),
        discharge_date=day + datetime.timedelta(days=rng.randint(0, 9)),
    )
    if procedure.leakage:
        for leak_site in rng.sample(LEAK_SITES, rng.randint(1, 2)):
            LeakageFactory(procedure=procedure, site=leak_site, symptomatic=rng.random() < 0.3)
    for _ in range(rng.choices([0, 1, 2], weights=[6, 2, 1])[0]):
        kind = rng.choice(COMPLICATIONS)
        ComplicationFactory(
            procedure=procedure,
            type=kind,
            severity=rng.choice(["major", "minor"]) if kind in ("csf_leak", "other") else "",
            cirse_grade=rng.randint(1, 4),
        )
    return procedure


def _visits(rng: random.Random, patient, index_day: datetime.date) -> None:
    baseline = None
    if rng.random() < 0.9:
        baseline = _visit(rng, patient, "baseline", index_day - datetime.timedelta(days=1), None)
    for timepoint, offset in FOLLOWUP_DAYS.items():
        day = index_day + datetime.timedelta(days=offset)
        if patient.death_date and day > patient.death_date:
            FollowUpFactory(patient=patient, timepoint=timepoint, status="deceased", visit_date=None, vas=None)
        elif rng.random() < 0.2:
            FollowUpFactory(patient=patient, timepoint=timepoint, status="missed", visit_date=None, vas=None)
        else:
            _visit(rng, patient, timepoint, day, baseline)


def _visit(rng: random.Random, patient, timepoint: str, day: datetime.date, baseline):
    if baseline is not None and rng.random() < 0.2:
        vas = baseline.vas  # a zero difference
    else:
        vas = rng.choice(VAS_STEPS)
    answers = [rng.randint(0, 5) for _ in range(10)]
    for skipped in rng.sample(range(10), rng.choices([0, 1, 2], weights=[6, 2, 1])[0]):
        answers[skipped] = None
    if baseline is not None and rng.random() < 0.15:
        answers = baseline.odi_answers
    visit = FollowUpFactory(
        patient=patient,
        timepoint=timepoint,
        visit_date=day,
        vas=vas,
        **{f"odi_q{i + 1}": a for i, a in enumerate(answers)},
    )
    meds = [
        MedicationFactory(followup=visit, drug=drug, daily_dose=Decimal(rng.randint(1, 40)) * 5)
        for drug in rng.sample(DRUGS, rng.choices([0, 1, 2, 3], weights=[3, 4, 2, 1])[0])
    ]
    visit.compute_derived(meds)
    visit.save()
    return visit
