"""Worklist benchmark: the nurse's home page (/patients/worklist/) at N patients.

Fills a scratch PostgreSQL database with N synthetic, messy patients (bulk
inserts): enrolments over the last six years up to today, an index procedure
for most (some still awaiting one, some without consent yet), about 80% of the
visits whose window opened recorded, deaths, "no new data" withdrawals (half of
them re-consented), "remove data" withdrawals, refusals of registry use and
follow-up ended by a withdrawn visit. Then it times the whole page as a nurse
of every site sees it (Django test client: session, filters, counts, the first
page and the awaiting list, rendered), the default page and a filtered one,
beside a same-run floor: a bare count over the same patients x timepoints join
without any rule, and a COPY of the patients' index dates.

    runuser -u postgres -- createdb -O registry registry_bench_wl
    export DATABASE_URL=postgres://registry:registry@127.0.0.1:5432/registry_bench_wl DJANGO_DEBUG=True
    .venv/bin/python manage.py migrate
    .venv/bin/python bench/worklist_benchmark.py --patients 100000

The database is refilled only when it does not already hold N patients.
"""

import argparse
import datetime
import io
import os
import random
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "registry.settings")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")

SITES = ("BJ", "SH", "GZ", "WH")


def fill(n: int, today: datetime.date) -> None:
    from django.core.management import call_command
    from django.db import transaction

    from accounts.models import Site
    from outcomes.models import FollowUp
    from patients.models import Consent, ConsentVersion, Patient
    from procedures.models import Procedure
    from registry.scoring import VISIT_WINDOWS

    call_command("flush", "--noinput", verbosity=0)
    rng = random.Random(1)
    sites = Site.objects.bulk_create([Site(code=c, name=f"Hospital {c}") for c in SITES])
    version = ConsentVersion.objects.create(version="1.0", effective_from=datetime.date(2010, 1, 1))
    day = datetime.timedelta(days=1)
    batch = 5000
    for start in range(0, n, batch):
        with transaction.atomic():
            patients = []
            for i in range(start, min(n, start + batch)):
                site = sites[i % len(sites)]
                enrol = today - rng.randrange(6 * 365) * day
                p = Patient(
                    study_id=f"{site.code}-{i + 1:06d}",
                    site=site,
                    enrolment_date=enrol,
                    full_name=f"Patient {i}",
                    mrn=f"M{i:07d}",
                    date_of_birth=enrol - rng.randint(40, 90) * 365 * day,
                    sex=rng.choice("MF"),
                    primary_tumour=rng.choice(["lung", "liver", "breast", "other"]),
                    primary_tumour_other="x",
                    lesion_character="osteolytic",
                    pathological_fracture=False,
                    denis_zones="I|II",
                    neurological_deficit=False,
                    symptom_onset_date=enrol - 40 * day,
                    imaging_date=enrol - 3 * day,
                    imaging_modality="ct",
                    prior_radiotherapy=False,
                    prior_chemotherapy=True,
                )
                p.compute_derived()
                patients.append(p)
            Patient.objects.bulk_create(patients)
            consents, procedures, visits, dead = [], [], [], []
            for p in patients:
                roll = rng.random()
                if roll < 0.01:  # enrolled, consent not recorded yet
                    continue
                consent = Consent(
                    patient=p,
                    consent_version=version,
                    signed_date=p.enrolment_date,
                    obtained_by="RN1",
                    scope_registry=roll >= 0.02,  # 1% refuse registry use
                    scope_future_contact=True,
                )
                consents.append(consent)
                if 0.02 <= roll < 0.05:  # withdrawals: no new data (half re-consent), remove data, no contact
                    kind = rng.choice(["no_new_data", "no_new_data", "remove_data", "no_contact"])
                    consent.withdrawn_date = min(today, p.enrolment_date + rng.randint(1, 200) * day)
                    consent.withdrawal_scope = kind
                    if kind == "no_new_data" and rng.random() < 0.5 and consent.withdrawn_date < today:
                        consents.append(
                            Consent(
                                patient=p,
                                consent_version=version,
                                signed_date=min(today, consent.withdrawn_date + rng.randint(1, 60) * day),
                                obtained_by="RN2",
                                scope_registry=True,
                                scope_future_contact=True,
                            )
                        )
                if rng.random() < 0.03:  # awaiting the index procedure
                    continue
                index = min(today, p.enrolment_date + rng.randint(0, 7) * day)
                procedures.append(
                    Procedure(
                        patient=p,
                        procedure_number=1,
                        procedure_date=index,
                        operator="IR1",
                        approach="interpedicular",
                        guidance="ct",
                        anaesthesia="local",
                        needle_gauge=13,
                        needle_count=1,
                        levels_treated="S1|S2",
                        cement_volume_ml=Decimal("6.5"),
                        operation_time_min=45,
                        technical_success=True,
                        leakage=False,
                        admission_date=index,
                        discharge_date=index + 4 * day,
                    )
                )
                death = index + rng.randint(10, 900) * day if rng.random() < 0.45 else None
                if death and death <= today:
                    p.death_date = death
                    dead.append(p)
                ended = rng.random() < 0.01
                for tp, (low, high) in VISIT_WINDOWS.items():
                    opens = index + low * day
                    if opens > today or (death and opens > death):
                        break
                    if rng.random() < 0.8:
                        on = min(today, opens + rng.randint(0, high - low) * day)
                        status = "withdrawn" if ended and tp == "m1" else "completed"
                        visits.append(
                            FollowUp(
                                patient=p,
                                timepoint=tp,
                                status=status,
                                visit_date=on,
                                vas=Decimal(rng.randint(0, 100)) / 10,
                            )
                        )
            Consent.objects.bulk_create(consents)
            Procedure.objects.bulk_create(procedures)
            FollowUp.objects.bulk_create(visits)
            Patient.objects.bulk_update(dead, ["death_date"])
        print(f"  filled {min(n, start + batch)} patients", file=sys.stderr)


def median_ms(fn, repeat: int = 5) -> float:
    fn()  # warm the caches and the connection
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=100_000)
    args = parser.parse_args()

    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from accounts.models import Site, User
    from patients.models import Patient
    from registry import dates
    from registry.scoring import VISIT_WINDOWS

    today = dates.today()
    if Patient.objects.count() != args.patients:
        started = time.perf_counter()
        fill(args.patients, today)
        print(f"filled the database in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")

    nurse, _ = User.objects.get_or_create(username="bench-nurse", defaults={"role": User.Role.NURSE})
    nurse.sites.set(Site.objects.all())
    client = Client()
    client.force_login(nurse)
    bj = Site.objects.get(code="BJ").pk

    def page(query: dict[str, object]) -> str:
        response = client.get("/patients/worklist/", query)
        assert response.status_code == 200, response.status_code
        return response.content.decode()

    values = ", ".join(f"({low}, {high})" for low, high in VISIT_WINDOWS.values())
    floor_sql = (
        f"SELECT count(*) FROM patients_patient p JOIN procedures_procedure pr ON pr.patient_id = p.id"
        f" AND pr.procedure_number = 1 CROSS JOIN (VALUES {values}) tp(low, high)"
        f" WHERE pr.procedure_date + tp.low <= %s"
    )

    def floor_count() -> None:
        with connection.cursor() as cursor:
            cursor.execute(floor_sql, [today + datetime.timedelta(days=14)])
            cursor.fetchone()

    def floor_copy() -> None:
        sink = io.BytesIO()
        with connection.cursor() as cursor:
            copy = "COPY (SELECT patient_id, procedure_date FROM procedures_procedure WHERE procedure_number = 1) TO STDOUT"
            cursor.cursor.copy_expert(copy, sink)  # psycopg2

    with CaptureQueriesContext(connection) as queries:
        html = page({})
    counts = {
        key: html.split(f'id="group-{key}"')[1].split("</span>")[0].rsplit(">", 1)[1]
        for key in ("overdue", "today", "week", "later")
    }
    print(f"patients: {args.patients:,}   today: {today}   queries per page: {len(queries.captured_queries)}")
    print(f"groups (all sites): {counts}")
    default = median_ms(lambda: page({}))
    filtered = median_ms(lambda: page({"site": bj, "timepoint": "m3", "group": "overdue"}))
    deep = median_ms(lambda: page({"page": 40}))
    count = median_ms(floor_count)
    copy = median_ms(floor_copy)
    print(f"worklist page, default (median of 5):           {default:7.1f} ms")
    print(f"worklist page, site+visit+group filter:          {filtered:7.1f} ms")
    print(f"worklist page 40:                                {deep:7.1f} ms")
    print(f"floor: count(*) of patients x timepoints join:   {count:7.1f} ms")
    print(f"floor: COPY of the index dates:                  {copy:7.1f} ms")


if __name__ == "__main__":
    main()
