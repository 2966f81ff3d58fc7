"""A realistic, messy multi-site synthetic cohort for benchmarks: `generate_synthetic --patients N --seed S`.

Deterministic for a seed and an anchor date (`--today`, default the sites'
today): the same arguments give the same rows. Enrolments spread over the six
years before the anchor at eight sites, with three consent-form versions (each
consent signed under the version in force that day). Consent histories: none
yet, a refusal of registry use, a re-consent after a refusal, a later refusal,
two records signed the same day, withdrawals with every scope (half of the "no
new data" ones re-consent, some "remove data" ones too). Index procedures for
most (some still awaiting one), a few second procedures; every approach,
levels, cement, leakages (with their sites, some symptomatic) and
complications (named types and graded "other"/CSF leaks). Visits at every
timepoint whose window opened, most completed, some missed or lost, some
follow-ups ended by a withdrawn visit; skipped ODI sections (9 answered still
scored, 8 not), opioids with buprenorphine and IV/subcutaneous routes (MME
unknown), deaths (some on the day of the procedure, some recorded as a
"deceased" visit). Derived values come from the models' own derivations.

Rows are written by the importer's COPY writer (`exchange.importer`: the same
write path as `import_bundle`, each row with its CREATE entry in the audit
trail), in one transaction: on PostgreSQL a batch of 2,000 patients is sent by
a thread while the next one is generated. It refuses a database that already
holds patients unless `--flush` is given (which empties it).
"""

import datetime
import random
import sys
import time
from contextlib import nullcontext
from decimal import Decimal
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from accounts.models import Site
from audit.models import AuditEvent
from audit.services import change_event, row_values
from exchange.importer import CopyWriter, copy_created, created_payloads
from outcomes.models import ODI_FIELDS, FollowUp, Medication
from patients.models import Consent, ConsentVersion, Patient
from procedures.models import Complication, Leakage, Procedure
from registry import dates
from registry.scoring import VISIT_WINDOWS

SITES = (("BJ", "Beijing"), ("SH", "Shanghai"), ("GZ", "Guangzhou"), ("WH", "Wuhan"),
         ("CD", "Chengdu"), ("XA", "Xi'an"), ("NJ", "Nanjing"), ("HZ", "Hangzhou"))  # fmt: skip
SITE_WEIGHTS = (30, 20, 14, 10, 9, 7, 6, 4)
TUMOURS = (("lung", 30), ("breast", 18), ("prostate", 12), ("liver", 10), ("kidney", 8), ("myeloma", 8),
           ("colorectal", 6), ("thyroid", 3), ("other", 5))  # fmt: skip
APPROACHES = (("interpedicular", 40), ("short_axis", 20), ("long_axis", 15), ("transiliac", 12),
              ("anterior_oblique", 5), ("combined", 5), ("other", 3))  # fmt: skip
PATTERNS = (("S1|S2", 35), ("S1", 20), ("S2", 10), ("S2|S3", 10), ("S1|S2|S3", 10), ("L5|S1", 5),
            ("S3|S4", 4), ("S1|S2|S3|S4", 3), ("S4|S5|coccyx", 3))  # fmt: skip
LEAK_SITES = [code for code, _ in Leakage.Site.choices]
LEAK_WEIGHTS = (30, 15, 10, 8, 5, 5, 20, 2, 5)
NAMED_COMPLICATIONS = ("urinary_retention", "wound_hematoma", "infection", "nerve_root_injury",
                       "pulmonary_embolism", "cauda_equina")  # fmt: skip
DRUGS = (("morphine", 25), ("oxycodone", 22), ("tramadol", 15), ("fentanyl_td", 10), ("codeine", 7),
         ("hydromorphone", 6), ("buprenorphine", 6), ("methadone", 3), ("tapentadol", 3), ("other", 3))  # fmt: skip
DOSES = {"morphine": (10, 120), "oxycodone": (10, 80), "tramadol": (50, 400), "fentanyl_td": (12, 100),
         "codeine": (30, 240), "hydromorphone": (2, 24), "buprenorphine": (0.2, 1.6), "methadone": (5, 40),
         "tapentadol": (50, 400), "other": (5, 50)}  # fmt: skip
VERSIONS = (("1.0", datetime.date(2015, 1, 1), datetime.date(2021, 6, 30)),
            ("2.0", datetime.date(2021, 7, 1), datetime.date(2024, 3, 31)),
            ("3.0", datetime.date(2024, 4, 1), None))  # fmt: skip
DAY = datetime.timedelta(days=1)
BATCH = 2000


def _weighted(rng: random.Random, table: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([v for v, _ in table], weights=[w for _, w in table])[0]


def vacuum_analyze() -> None:
    """VACUUM (ANALYZE) the registry's tables after a bulk fill: planner statistics, and the
    visibility map and hint bits that autovacuum would set later (it may be off, as on the
    benchmark machine: a first export of 100,000 fresh patients then took 5.7 s instead of 3.4 s).
    Only tables this role owns (the system catalogs would each print a warning). Inside a
    transaction (a test's), where VACUUM cannot run, ANALYZE alone."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables"
            " WHERE tableowner = current_user AND schemaname = current_schema()"
        )
        tables = [name for (name,) in cursor.fetchall()]
        if tables:
            cursor.execute("VACUUM (ANALYZE) " + ", ".join(tables))


class Command(BaseCommand):
    help = "Fill the configured database with a synthetic multi-site cohort (benchmarks; deterministic per seed)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--patients", type=int, required=True)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--today", type=datetime.date.fromisoformat, help="anchor date (default: today)")
        parser.add_argument("--flush", action="store_true", help="empty the database first (scratch databases only)")

    def handle(self, *args: Any, **options: Any) -> None:
        n, seed = options["patients"], options["seed"]
        if n < 1:
            raise CommandError("--patients must be at least 1.")
        if options["flush"]:
            call_command("flush", "--noinput", verbosity=0)
        elif Patient.objects.exists():
            raise CommandError("The database already holds patients; use --flush on a scratch database.")
        today = options["today"] or dates.today()
        started = time.perf_counter()
        generator = Generator(seed, today)
        # One transaction; on PostgreSQL each batch's rows are sent (a thread, the same connection) while
        # the next batch is generated, which makes no query.
        writer = CopyWriter() if connection.vendor == "postgresql" else None
        try:
            with transaction.atomic(), connection.execute_wrapper(writer.guard) if writer else nullcontext():
                generator.setup()
                for start in range(0, n, BATCH):
                    batches = generator.batch(start, min(n, start + BATCH))
                    if writer:
                        writer.join()
                        with connection.cursor() as cursor:
                            writer.start(created_payloads(batches, user=None, reason=generator.reason, cursor=cursor))
                    else:
                        copy_created(batches, user=None, reason=generator.reason)
                    if options["verbosity"] > 1:
                        print(f"  {min(n, start + BATCH):,} patients", file=sys.stderr)
                if writer:
                    writer.join()
        finally:
            if writer:
                writer.wait()
        vacuum_analyze()
        self.stdout.write(
            f"{n:,} patients (seed {seed}, today {today}): "
            + ", ".join(f"{k} {v:,}" for k, v in generator.totals.items())
            + f" in {time.perf_counter() - started:.0f} s"
        )


class Generator:
    def __init__(self, seed: int, today: datetime.date) -> None:
        self.seed, self.today = seed, today
        self.reason = f"generate_synthetic --seed {seed}"
        self.totals: dict[str, int] = {}

    def setup(self) -> None:
        self.sites = [Site(code=code, name=f"{name} hospital") for code, name in SITES]
        self.versions = [ConsentVersion(version=v, effective_from=f, effective_to=t) for v, f, t in VERSIONS]
        events = []
        for model, rows in ((Site, self.sites), (ConsentVersion, self.versions)):
            existing = {getattr(o, "code", None) or getattr(o, "version", None): o for o in model.objects.all()}
            key = "code" if model is Site else "version"
            new = [r for r in rows if getattr(r, key) not in existing]
            model.objects.bulk_create(new)
            events += [self._event(r, "", getattr(r, "code", "")) for r in new]
            rows[:] = [existing.get(getattr(r, key), r) for r in rows]
        AuditEvent.objects.bulk_create(events)

    def _event(self, instance: Any, study_id: str, site_code: str) -> AuditEvent:
        return change_event(
            action=AuditEvent.Action.CREATE,
            instance=instance,
            user=None,
            changes={k: [None, v] for k, v in row_values(instance).items()},
            reason=self.reason,
            study_id=study_id,
            site_code=site_code,
        )

    def _version_on(self, day: datetime.date) -> ConsentVersion:
        return next(v for v in self.versions if v.in_force_on(day))

    def batch(self, start: int, stop: int) -> list[list[Any]]:
        """The rows of patients start..stop-1, one list per model, parents first (as the COPY writer takes them)."""
        rows: dict[type, list[Any]] = {m: [] for m in (Patient, Consent, Procedure, Leakage, Complication)}
        visits: list[tuple[FollowUp, list[Medication]]] = []
        for i in range(start, stop):
            rng = random.Random(self.seed * 1_000_003 + i)  # each patient from its own stream: batch-independent
            self._patient(rng, i, rows, visits)
        followups = [f for f, _ in visits]
        meds = [m for _, ms in visits for m in ms]
        batches = [rows[Patient], rows[Consent], rows[Procedure], rows[Leakage], rows[Complication], followups, meds]
        models = (Patient, Consent, Procedure, Leakage, Complication, FollowUp, Medication)
        for batch, model in zip(batches, models, strict=True):
            name = model._meta.verbose_name_plural
            self.totals[name] = self.totals.get(name, 0) + len(batch)
        return batches

    def _patient(self, rng: random.Random, i: int, rows: dict[type, list[Any]], visits: list) -> None:
        today = self.today
        site = self.sites[rng.choices(range(len(SITES)), weights=SITE_WEIGHTS)[0]]
        enrol = today - rng.randrange(6 * 365) * DAY
        tumour = _weighted(rng, TUMOURS)
        age = max(18, min(99, round(rng.gauss(64, 11))))
        p = Patient(
            study_id=f"{site.code}-{i + 1:06d}",
            site=site,
            enrolment_date=enrol,
            full_name=f"Synthetic Patient {i + 1}",
            mrn=f"S{self.seed}-{i + 1:07d}",
            email=f"p{i + 1}@example.org" if rng.random() < 0.3 else "",
            date_of_birth=enrol - age * 365 * DAY - rng.randrange(365) * DAY,
            sex="F" if tumour == "breast" else "M" if tumour == "prostate" else rng.choice("MF"),
            primary_tumour=tumour,
            primary_tumour_other="melanoma" if tumour == "other" else "",
            lesion_character=rng.choice(["osteolytic", "osteolytic", "osteoblastic", "mixed"]),
            pathological_fracture=rng.random() < 0.4,
            denis_zones=rng.choice(["I", "I|II", "II", "I|II|III", "II|III"]),
            neurological_deficit=rng.random() < 0.1,
            symptom_onset_date=enrol - rng.randint(5, 400) * DAY,
            imaging_date=enrol - rng.randint(0, 30) * DAY,
            imaging_modality=rng.choice(["ct", "mri", "both"]),
            prior_radiotherapy=rng.random() < 0.35,
            prior_chemotherapy=rng.random() < 0.6,
            ecog=rng.choice([None, 0, 1, 1, 2, 2, 3, 4]),
        )
        p.compute_derived()
        rows[Patient].append(p)

        # consent history
        consents = rows[Consent]
        roll = rng.random()
        stop_new_data: datetime.date | None = None  # a withdrawal that stops new data, if not re-consented

        def consent(day: datetime.date, registry: bool = True, **kw: Any) -> Consent:
            c = Consent(
                patient=p,
                consent_version=self._version_on(day),
                signed_date=day,
                obtained_by=f"RN{rng.randint(1, 40)}",
                scope_registry=registry,
                scope_future_contact=rng.random() < 0.85,
                **kw,
            )
            consents.append(c)
            return c

        if roll < 0.015:  # no consent recorded yet
            return
        if roll < 0.03:  # refused registry use
            consent(enrol, registry=False)
            return
        if roll < 0.04:  # refused, then re-consented (data entry starts after)
            consent(enrol, registry=False)
            consent(enrol, registry=True)  # same day: the later record decides
        elif roll < 0.045:  # consented, later refused registry use: no longer analysed
            consent(enrol)
            stop_new_data = consent(min(today, enrol + rng.randint(30, 300) * DAY), registry=False).signed_date
        else:
            consent(enrol)
        if 0.045 <= roll < 0.085:  # withdrawals
            c = consents[-1]
            kind = rng.choice(["no_new_data", "no_new_data", "remove_data", "no_contact"])
            c.withdrawn_date = min(today, enrol + rng.randint(1, 300) * DAY)
            c.withdrawal_scope = kind
            c.withdrawal_reason = "patient's wish"
            if kind != "no_contact":
                stop_new_data = c.withdrawn_date
            if kind != "no_contact" and rng.random() < 0.4 and c.withdrawn_date < today:
                consent(min(today, c.withdrawn_date + rng.randint(1, 90) * DAY))
                if kind == "no_new_data":
                    stop_new_data = None

        # index procedure
        if rng.random() < 0.03:
            return  # awaiting the procedure
        index = min(today, enrol + rng.randint(0, 10) * DAY)
        if stop_new_data is not None and index > stop_new_data:
            return
        death = None
        if rng.random() < 0.45:
            death = index + int(rng.expovariate(1 / 300)) * DAY
            if rng.random() < 0.005:
                death = index  # perioperative death
            if death > today:
                death = None
        p.death_date = death
        procs = [self._procedure(rng, p, 1, index, rows)]
        last = death or today
        if stop_new_data is not None:
            last = min(last, stop_new_data)
        if rng.random() < 0.05 and (last - index).days > 60:
            procs.append(self._procedure(rng, p, 2, index + rng.randint(30, (last - index).days) * DAY, rows))
        if death and death < procs[-1].discharge_date:
            p.death_date = death = procs[-1].discharge_date

        # visits
        ended = rng.random() < 0.015
        lost_from = rng.choice(list(VISIT_WINDOWS)[2:]) if rng.random() < 0.08 else None
        for tp, (low, high) in VISIT_WINDOWS.items():
            opens, closes = index + low * DAY, index + high * DAY
            if tp == "baseline":
                opens = max(opens, enrol)
            if opens > today or (death and opens > death) or (stop_new_data and opens > stop_new_data):
                if death and opens > death and rng.random() < 0.3 and death <= today:
                    visits.append((FollowUp(patient=p, timepoint=tp, status="deceased", visit_date=death), []))
                break
            if rng.random() < 0.12:  # never recorded (overdue or simply not done)
                continue
            on = min(today, closes, opens + rng.randint(0, max(0, (closes - opens).days)) * DAY)
            if death:
                on = min(on, death)
            if stop_new_data:
                on = min(on, stop_new_data)
            if on < opens:
                continue
            if lost_from == tp:
                visits.append((FollowUp(patient=p, timepoint=tp, status="lost"), []))
                break
            if ended and tp == "m1":
                visits.append((FollowUp(patient=p, timepoint=tp, status="withdrawn", visit_date=on), []))
                break
            if rng.random() < 0.06:
                visits.append((FollowUp(patient=p, timepoint=tp, status="missed"), []))
                continue
            visits.append(self._visit(rng, p, tp, on))

    def _procedure(self, rng: random.Random, p: Patient, number: int, day: datetime.date, rows: dict) -> Procedure:
        approach = _weighted(rng, APPROACHES)
        guidance = rng.choice(["ct", "ct", "fluoro_biplane", "cbct", "ct_fluoro"])
        admitted = day - rng.choice([0, 0, 1, 1, 2]) * DAY
        if number == 1:
            admitted = max(admitted, p.enrolment_date)
        leak = rng.random() < 0.3
        proc = Procedure(
            patient=p,
            procedure_number=number,
            procedure_date=day,
            operator=f"IR{rng.randint(1, 30)}",
            approach=approach,
            guidance=guidance,
            anaesthesia=rng.choice(["local", "local", "sedation", "general"]),
            needle_gauge=rng.choice([10, 11, 13, 13, 15]),
            needle_count=rng.randint(1, 4),
            levels_treated=_weighted(rng, PATTERNS),
            cement_product=rng.choice(["PALACOS V", "Osteopal V", ""]),
            cement_viscosity=rng.choice(["low", "medium", "high", ""]),
            cement_volume_ml=Decimal(rng.randint(10, 250)) / 10,
            operation_time_min=rng.randint(20, 150),
            fluoroscopy_time_s=rng.randint(60, 1800) if guidance != "ct" else None,
            dose_area_product_gycm2=Decimal(rng.randint(100, 20000)) / 100 if guidance != "ct" else None,
            ct_dlp_mgycm=Decimal(rng.randint(10000, 200000)) / 100 if "ct" in guidance else None,
            technical_success=rng.random() < 0.97,
            leakage=leak,
            admission_date=admitted,
            discharge_date=min(self.today, day + rng.choice([0, 1, 2, 3, 3, 4, 5, 7, 10, 14]) * DAY),
        )
        if proc.discharge_date < day:
            proc.discharge_date = day
        rows[Procedure].append(proc)
        if leak:
            for site in dict.fromkeys(rng.choices(LEAK_SITES, weights=LEAK_WEIGHTS, k=rng.choice([1, 1, 1, 2, 3]))):
                rows[Leakage].append(
                    Leakage(procedure=proc, site=site, symptomatic=rng.random() < 0.08, treatment_required=False)
                )
        if rng.random() < 0.08:
            kind = rng.choice([*NAMED_COMPLICATIONS, "csf_leak", "other"])
            c = Complication(
                procedure=proc,
                onset_date=min(self.today, day + rng.randint(0, 3) * DAY),
                type=kind,
                severity=rng.choice(["major", "minor"]) if kind in ("csf_leak", "other") else "",
                cirse_grade=rng.randint(1, 4),
                resolved=rng.random() < 0.8,
                description="synthetic",
            )
            c.compute_derived()
            rows[Complication].append(c)
        return proc

    def _visit(self, rng: random.Random, p: Patient, tp: str, on: datetime.date) -> tuple[FollowUp, list]:
        base = tp == "baseline"
        vas = min(100, max(0, round(rng.gauss(72 if base else 38, 18))))
        f = FollowUp(patient=p, timepoint=tp, status="completed", visit_date=on, vas=Decimal(vas) / 10)
        level = rng.randint(2, 5) if base else rng.randint(0, 4)
        answers: list[int | None] = [min(5, max(0, level + rng.randint(-2, 1))) for _ in ODI_FIELDS]
        skip = rng.random()
        if skip < 0.12:  # section 8 (sex life) often left blank: still scored
            answers[7] = None
        if skip < 0.03:  # two left blank: not scored
            answers[rng.randrange(7)] = None
        if skip > 0.98:
            answers = [None] * 10  # ODI not filled in at all
        for field, value in zip(ODI_FIELDS, answers, strict=True):
            setattr(f, field, value)
        meds = []
        draws = range(rng.choice([0, 1, 1, 2, 2, 3] if base else [0, 0, 1, 1, 2]))
        for drug in dict.fromkeys(_weighted(rng, DRUGS) for _ in draws):  # (a set's order would vary per process)
            low, high = DOSES[drug]
            dose = Decimal(str(round(rng.uniform(low, high), 1 if high < 5 else 0)))
            route = "transdermal" if drug == "fentanyl_td" else ""
            if drug in ("morphine", "hydromorphone") and rng.random() < 0.15:
                route = rng.choice(["iv", "sc"])
            if drug == "buprenorphine":
                route = rng.choice(["transdermal", "other", "iv"])
            m = Medication(followup=f, drug=drug, daily_dose=dose, route=route)
            m.compute_derived()
            meds.append(m)
        f.compute_derived(meds)
        return f, meds
