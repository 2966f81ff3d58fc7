"""Dashboard benchmark: /dashboard/, summary.json and `registry_summary --json` at N patients.

Fills a scratch PostgreSQL database with `manage.py generate_synthetic
--patients N --seed S` (unless it already holds N patients), then prints,
median of `--repeat` runs:

- `/dashboard/` as an investigator of every site, through the Django test
  client (session, filters, the queries, statistics, template);
- `/dashboard/summary.json`, the same way;
- `manage.py registry_summary --json` as a separate process (wall time and
  its peak RSS);
- the floor, measured in the same run: a COPY to memory of every column of
  every row those figures are computed from (patients, consents, procedures,
  leakages, complications, visits), without any rule or statistic.

    runuser -u postgres -- createdb -O registry registry_bench_dash
    export DATABASE_URL=postgres://registry:registry@127.0.0.1:5432/registry_bench_dash DJANGO_DEBUG=True
    .venv/bin/python manage.py migrate
    .venv/bin/python bench/dashboard_benchmark.py --patients 100000
"""

import argparse
import io
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "registry.settings")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")

FLOOR_COPIES = (
    "SELECT id, site_id, age_at_enrolment, sex, primary_tumour, symptom_onset_date, imaging_date, death_date"
    " FROM patients_patient",
    "SELECT patient_id, signed_date, withdrawn_date, scope_registry, withdrawal_scope FROM patients_consent",
    "SELECT id, patient_id, procedure_number, procedure_date, admission_date, discharge_date, approach,"
    " levels_treated, technical_success, leakage, cement_volume_ml, operation_time_min FROM procedures_procedure",
    "SELECT procedure_id, site, symptomatic FROM procedures_leakage",
    "SELECT procedure_id, type, severity, cirse_grade FROM procedures_complication",
    "SELECT patient_id, timepoint, status, visit_date, vas, odi_q1, odi_q2, odi_q3, odi_q4, odi_q5, odi_q6,"
    " odi_q7, odi_q8, odi_q9, odi_q10, odi_score, opioid_count, mme_per_day FROM outcomes_followup",
)


def median_s(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm the caches and the connection
    times, cpu = [], []
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    CPU[fn] = statistics.median(cpu)  # this process's CPU (the Django side; the database's work is not in it)
    return statistics.median(times)


CPU: dict[Callable[[], object], float] = {}


def command_run() -> tuple[float, int]:
    """(wall seconds, peak RSS in MB) of `manage.py registry_summary --json` as its own process."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "registry_summary", "--json"],
        stdout=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"registry_summary failed ({status})")
    return elapsed, usage.ru_maxrss // 1024


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

    if Patient.objects.count() != args.patients:
        started = time.perf_counter()
        call_command("generate_synthetic", patients=args.patients, seed=args.seed, flush=True)
        print(f"filled the database in {time.perf_counter() - started:.0f} s", file=sys.stderr)

    investigator, _ = User.objects.get_or_create(
        username="bench-investigator", defaults={"role": User.Role.INVESTIGATOR}
    )
    investigator.sites.set(Site.objects.all())
    client = Client()
    client.force_login(investigator)

    def get(path: str) -> Callable[[], bytes]:
        def fetch() -> bytes:
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)
            return response.content

        return fetch

    def floor() -> int:
        size = 0
        with connection.cursor() as cursor:
            for sql in FLOOR_COPIES:
                sink = io.BytesIO()
                cursor.cursor.copy_expert(f"COPY ({sql}) TO STDOUT", sink)  # psycopg2
                size += sink.tell()
        return size

    queries = {}
    for path in ("/dashboard/", "/dashboard/summary.json"):
        with CaptureQueriesContext(connection) as captured:
            get(path)()
        queries[path] = len(captured.captured_queries)
    analysed = client.get("/dashboard/summary.json").json()["cohort"]["patients"]
    copied = floor()
    page_fn, summary_fn = get("/dashboard/"), get("/dashboard/summary.json")
    page = median_s(page_fn, args.repeat)
    summary = median_s(summary_fn, args.repeat)
    runs = [command_run() for _ in range(args.repeat)]
    command = statistics.median(t for t, _ in runs)
    rss = max(r for _, r in runs)
    copy = median_s(floor, args.repeat)
    print(
        f"patients: {args.patients:,} (analysed {analysed:,})   median of {args.repeat}   load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"/dashboard/ (investigator, {queries['/dashboard/']} queries):      {page:7.3f} s   {page / copy:5.1f}x floor"
        f"   (CPU here {CPU[page_fn]:.3f} s)"
    )
    print(
        f"/dashboard/summary.json ({queries['/dashboard/summary.json']} queries):           "
        f"{summary:7.3f} s   {summary / copy:5.1f}x floor   (CPU here {CPU[summary_fn]:.3f} s)"
    )
    print(f"registry_summary --json (process):          {command:7.3f} s   max RSS {rss} MB")
    print(f"floor: COPY of the values they need:        {copy:7.3f} s   ({copied / 1e6:.0f} MB of text)")


if __name__ == "__main__":
    main()
