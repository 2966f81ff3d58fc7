"""Worklist benchmark: the nurse's home page (/patients/worklist/) at N patients.

Fills a scratch PostgreSQL database with `manage.py generate_synthetic
--patients N --seed S` (a messy multi-site cohort: enrolments over six years
up to today, most with an index procedure, some awaiting one or consent,
visits with gaps, deaths, withdrawals of every scope, refusals, follow-up
ended by a withdrawn visit), unless it already holds N patients. Then it times
the whole page as a nurse of every site sees it (Django test client: session,
filters, counts, the first page and the awaiting list, rendered), the default
page, a filtered one and page 40 (medians of `--repeat`, default 3, and the
load average), beside a same-run floor: a bare count over the same patients x
timepoints join without any rule, and a COPY of the patients' index dates.

    runuser -u postgres -- createdb -O registry registry_bench_wl
    export DATABASE_URL=postgres://registry:registry@127.0.0.1:5432/registry_bench_wl DJANGO_DEBUG=True
    .venv/bin/python manage.py migrate
    .venv/bin/python bench/worklist_benchmark.py --patients 100000
"""

import argparse
import datetime
import io
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "registry.settings")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")


def median_ms(fn, repeat: int) -> tuple[float, float]:
    """(wall, CPU of this process) in ms, medians of `repeat` runs after a warm-up. The CPU time (the
    Django side: the database server's work is not in it) is the steadier figure on a loaded machine."""
    fn()  # warm the caches and the connection
    times, cpu = [], []
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return statistics.median(times) * 1000, statistics.median(cpu) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command
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
        call_command("generate_synthetic", patients=args.patients, seed=args.seed, today=today, flush=True)
        print(f"filled the database in {time.perf_counter() - started:.0f} s", file=sys.stderr)

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
    n = args.repeat
    default = median_ms(lambda: page({}), n)
    filtered = median_ms(lambda: page({"site": bj, "timepoint": "m3", "group": "overdue"}), n)
    deep = median_ms(lambda: page({"page": 40}), n)
    count = median_ms(floor_count, n)
    copy = median_ms(floor_copy, n)
    print(f"load average: {os.getloadavg()[0]:.1f}   medians of {n}")
    for label, (wall, cpu) in (
        ("worklist page, default", default),
        ("worklist page, site+visit+group filter", filtered),
        ("worklist page 40", deep),
        ("floor: count(*) of patients x timepoints join", count),
        ("floor: COPY of the index dates", copy),
    ):
        print(f"{label + ':':48} {wall:7.1f} ms   (CPU here {cpu:6.1f} ms)")


if __name__ == "__main__":
    main()
