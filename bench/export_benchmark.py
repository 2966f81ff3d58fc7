"""Export benchmark: time, time to first byte and memory of the streamed export.

Fills a scratch PostgreSQL database with N patients (`manage.py generate_synthetic`, or with
`--fill simple` this script's uniform bulk fill: consent, index procedure, baseline and post
visits, opioid rows), then runs the same generator the /exports/ page streams, into a byte counter.

    runuser -u postgres -- createdb -O registry registry_bench
    export DATABASE_URL=postgres://registry:registry@127.0.0.1:5432/registry_bench
    .venv/bin/python manage.py migrate
    .venv/bin/python bench/export_benchmark.py --patients 100000 [--level identified] [--shape both]
        [--engine sql|python] [--no-cache] [--package]

The database is refilled only when it does not already hold N patients. Prints the export's
time (the faster of `--runs` exports, 2 by default, as the floor takes the faster of two COPYs),
time to first byte and max RSS (measured in a fresh child process) beside the same run's
floor: a COPY of every table the export reads, and that COPY plus deflating its bytes.
"""

import argparse
import contextlib
import datetime
import os
import random
import resource
import subprocess
import sys
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "registry.settings")


def fill(n: int) -> None:
    from django.core.management import call_command
    from django.db import transaction

    from accounts.models import Site
    from outcomes.models import FollowUp, Medication
    from patients.models import Consent, ConsentVersion, Patient
    from procedures.models import Procedure
    from registry.scoring import mme_per_day, odi_score

    call_command("flush", "--noinput", verbosity=0)
    rng = random.Random(1)
    sites = Site.objects.bulk_create([Site(code=c, name=f"Hospital {c}") for c in ("BJ", "SH", "GZ", "WH")])
    version = ConsentVersion.objects.create(version="1.0", effective_from=datetime.date(2010, 1, 1))
    batch = 5000
    for start in range(0, n, batch):
        with transaction.atomic():
            patients = []
            for i in range(start, min(n, start + batch)):
                site = sites[i % len(sites)]
                enrol = datetime.date(2015, 1, 1) + datetime.timedelta(days=rng.randrange(3000))
                p = Patient(
                    study_id=f"{site.code}-{i + 1:06d}",
                    site=site,
                    enrolment_date=enrol,
                    full_name=f"Patient {i}",
                    mrn=f"M{i:07d}",
                    date_of_birth=enrol - datetime.timedelta(days=rng.randint(40, 90) * 365),
                    sex=rng.choice("MF"),
                    primary_tumour=rng.choice(["lung", "liver", "breast", "other"]),
                    primary_tumour_other="x",
                    lesion_character="osteolytic",
                    pathological_fracture=False,
                    denis_zones="I|II",
                    neurological_deficit=False,
                    symptom_onset_date=enrol - datetime.timedelta(days=40),
                    imaging_date=enrol - datetime.timedelta(days=3),
                    imaging_modality="ct",
                    prior_radiotherapy=False,
                    prior_chemotherapy=True,
                    notes="=1+1 free text",
                )
                p.compute_derived()
                patients.append(p)
            Patient.objects.bulk_create(patients)
            Consent.objects.bulk_create(
                [
                    Consent(
                        patient=p,
                        consent_version=version,
                        signed_date=p.enrolment_date,
                        obtained_by="RN1",
                        scope_registry=True,
                        scope_future_contact=True,
                    )
                    for p in patients
                ]
            )
            Procedure.objects.bulk_create(
                [
                    Procedure(
                        patient=p,
                        procedure_number=1,
                        procedure_date=p.enrolment_date + datetime.timedelta(days=1),
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
                        admission_date=p.enrolment_date,
                        discharge_date=p.enrolment_date + datetime.timedelta(days=4),
                    )
                    for p in patients
                ]
            )
            visits, meds = [], []
            for p in patients:
                for tp, offset in (("baseline", 0), ("post", 2)):
                    answers = [rng.randint(0, 5) for _ in range(10)]
                    drugs = [("morphine", Decimal(30)), ("tramadol", Decimal(100))][: rng.randint(0, 2)]
                    v = FollowUp(
                        patient=p,
                        timepoint=tp,
                        status="completed",
                        visit_date=p.enrolment_date + datetime.timedelta(days=offset),
                        vas=Decimal(rng.randint(0, 100)) / 10,
                        **{f"odi_q{k + 1}": a for k, a in enumerate(answers)},
                        odi_score=odi_score(answers),
                        opioid_count=len(drugs),
                        mme_per_day=mme_per_day(drugs),
                        mme_factor_table="CDC-2022",
                    )
                    visits.append(v)
                    meds.extend(Medication(followup=v, drug=d, daily_dose=dose, route="oral") for d, dose in drugs)
            FollowUp.objects.bulk_create(visits)
            Medication.objects.bulk_create(meds)
        print(f"  filled {min(n, start + batch)} patients", file=sys.stderr)


def peak_rss_mib() -> float:
    """This process's peak RSS. Linux: VmHWM, the peak of its own memory since exec; getrusage's
    ru_maxrss would also count the parent's peak at the spawn (a parent that just filled 100,000
    patients), since a vfork()ed child's exec keeps it."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def copy_floor() -> tuple[float, float, int]:
    """COPY of every table the export reads, whole, into a byte counter: (seconds, seconds with
    deflate of the same bytes by the zip's compressor, bytes). The floor the export is compared with."""
    from django.db import connection

    from exchange.exporter import MODELS, csv_compressor

    class Counter:
        def __init__(self, deflate: bool) -> None:
            self.size = 0
            self.zlib = csv_compressor() if deflate else None

            self.pending: list[bytes] = []

        def write(self, data: bytes) -> None:  # one call per row; deflated in batches, as the export does
            self.size += len(data)
            if self.zlib is not None:
                self.pending.append(data)
                if len(self.pending) >= 2048:
                    self.zlib.compress(b"".join(self.pending))
                    self.pending.clear()

        def close(self) -> None:
            if self.zlib is not None:
                self.zlib.compress(b"".join(self.pending))
                self.zlib.flush()

    times: dict[bool, float] = {}
    for deflate in (False, True, False, True):  # the faster of two each: the first warms the cache
        counter = Counter(deflate)
        start = time.perf_counter()
        with connection.cursor() as cursor:
            for model in MODELS.values():
                cursor.cursor.copy_expert(
                    f"COPY {model._meta.db_table} TO STDOUT WITH (FORMAT csv, HEADER true)", counter
                )
        counter.close()
        times[deflate] = min(times.get(deflate, float("inf")), time.perf_counter() - start)
    return times[False], times[True], counter.size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--level", choices=["deidentified", "identified"], default="deidentified")
    parser.add_argument("--shape", choices=["both", "long", "wide"], default="both")
    parser.add_argument(
        "--engine", choices=["sql", "python"], default="sql", help="sql: COPY per file (PostgreSQL default)"
    )
    parser.add_argument(
        "--package", action="store_true", help="also the SPSS/Stata/R files (ExportSpec.packages; asked for in the app)"
    )
    parser.add_argument("--no-package", dest="package", action="store_false", help="the CSV files only (the default)")
    parser.add_argument(
        "--no-cache", action="store_true", help="format every cell in the queries instead of reading the export cache"
    )
    parser.add_argument("--trace-memory", action="store_true", help="also trace Python allocations (slows the run ~3x)")
    parser.add_argument(
        "--fill",
        choices=["synthetic", "simple"],
        default="synthetic",
        help="synthetic: manage.py generate_synthetic (messy, multi-site); simple: this script's uniform fill",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=2, help="exports in the measured process; the fastest counts")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    import django

    django.setup()
    from exchange import exporter
    from exchange.exporter import ExportResult, ExportSpec, export_zip
    from patients.models import Patient

    if not args.child:
        if Patient.objects.count() != args.patients:
            started = time.perf_counter()
            if args.fill == "synthetic":
                from django.core.management import call_command

                call_command("generate_synthetic", patients=args.patients, seed=args.seed, flush=True)
            else:
                fill(args.patients)
            from exchange.management.commands.generate_synthetic import vacuum_analyze

            vacuum_analyze()  # statistics, visibility map and hint bits of the new rows, as autovacuum would
            print(f"filled the database in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        copy_s, deflate_s, copy_bytes = copy_floor()
        # measure the export in a fresh process (max RSS survives exec, so not os.execv)
        child = subprocess.run([sys.executable, *sys.argv, "--child"], check=False, capture_output=True, text=True)
        sys.stderr.write(child.stderr)
        print(child.stdout, end="")
        print(
            f"floor, same run: COPY of the {len(exporter.MODELS)} tables {copy_s:.2f} s "
            f"({copy_bytes / 2**20:.0f} MiB CSV), COPY + deflate {deflate_s:.2f} s"
        )
        for line in child.stdout.splitlines():
            if line.startswith("total_s="):
                total = float(line.split("=")[1])
                print(f"export / COPY: {total / copy_s:.1f}x   export / (COPY + deflate): {total / deflate_s:.1f}x")
        sys.exit(child.returncode)

    if args.trace_memory:
        tracemalloc.start()
    spec = ExportSpec(level=args.level, shape=args.shape, packages=args.package, reason="benchmark")
    runs = []
    for _ in range(args.runs):  # the faster run counts, as for the floor (the first warms the cache)
        result = ExportResult()
        start = time.perf_counter()
        first = None
        size = 0
        for chunk in export_zip(spec, result, engine=args.engine, cache=not args.no_cache):
            if first is None:
                first = time.perf_counter() - start
            size += len(chunk)
        runs.append((time.perf_counter() - start, first, size))
    total, first, size = min(runs)
    peak = tracemalloc.get_traced_memory()[1] if args.trace_memory else None
    rss = peak_rss_mib()
    rows = sum(result.row_counts.values())
    package = "with" if args.package else "without"
    cache = "without the export cache" if args.no_cache else "export cache"
    print(
        f"patients: {args.patients}  level: {args.level}  shape: {args.shape}  engine: {args.engine}  {cache}  ", end=""
    )
    print(f"{package} statistics-package files")
    print(f"rows written: {rows:,}  zip size: {size / 2**20:.1f} MiB")
    each = ", ".join(f"{t:.2f}" for t, _, _ in runs)
    print(
        f"time to first byte: {first * 1000:.0f} ms   total: {total:.1f} s   ({rows / total:,.0f} rows/s; runs {each} s)"
    )
    traced = f"peak traced Python memory: {peak / 2**20:.1f} MiB   " if peak is not None else ""
    print(f"{traced}process max RSS: {rss:.0f} MiB")
    print(f"total_s={total:.3f}")


if __name__ == "__main__":
    main()
