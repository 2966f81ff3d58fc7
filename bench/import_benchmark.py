"""Import benchmark: wall time and peak RSS of `manage.py import_bundle` (a child process) on a
synthetic bundle, beside a same-run floor: COPY of the same CSV rows into plain text tables.

Usage (PostgreSQL scratch database; it is emptied first):
    runuser -u postgres -- createdb -O registry registry_bench_imp
    export DATABASE_URL=postgres://registry:registry@127.0.0.1:5432/registry_bench_imp DJANGO_DEBUG=True
    .venv/bin/python manage.py migrate
    .venv/bin/python bench/import_benchmark.py --patients 10000 [--bundle DIR] [--repeat 3]

The bundle comes from tests/bundles.py write_bundle; `--bundle DIR` imports a bundle you made (e.g. an
identified export of a `generate_synthetic` cohort). Figures are medians of `--repeat`.

`--trail-floor` adds the database's own share: the written trail entries inserted again into the trail
table (its indexes, its chain trigger) in a transaction that is rolled back, and the same without the
trigger (into a copy of the table with the same indexes).

    .venv/bin/python bench/import_benchmark.py --synthetic 10000 [--seed 1 --today 2026-12-02]

runs `generate_synthetic --flush` as a child instead (wall, CPU, peak RSS) beside the COPY of the rows it
wrote (every clinical table and the trail, out to text and back into plain text tables).
"""

import argparse
import contextlib
import csv
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "registry.settings")


def make_bundle(folder: Path, patients: int, seed: int) -> Path:
    """A messy multi-site bundle (tests/bundles.py: sites, deaths, withdrawals, repeat procedures, skipped ODI)."""
    from tests.bundles import write_bundle

    return write_bundle(folder, patients=patients, seed=seed)


# The child reports its own peak (VmHWM): getrusage's ru_maxrss of a child keeps the peak of the parent it
# was forked from across exec (the parent holds the generated bundle), so it would overstate the import.
CHILD = """
import os, sys
sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "registry.settings")
import django
django.setup()
from django.core.management import call_command
call_command("import_bundle", sys.argv[1])
sys.stdout.flush()
print(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).strip())
"""


def import_child(folder: Path) -> tuple[float, float, float, str]:
    """(seconds, peak RSS in MiB, CPU seconds, output) of one import in a fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(folder)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.exit(f"import failed:\n{out[-3000:]}")
    peak = float(out.rsplit("VmHWM:", 1)[1].split()[0]) / 1024
    out = out.rsplit("VmHWM:", 1)[0]
    return elapsed, peak, usage.ru_utime + usage.ru_stime, out.strip()


def copy_floor(folder: Path) -> float:
    """Seconds to COPY every CSV of the bundle into text tables (no parsing, no checks, no trail)."""
    from django.db import connection, transaction

    start = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        for path in sorted(folder.glob("*.csv")):
            with path.open(encoding="utf-8", newline="") as fh:
                header = next(csv.reader(fh))
            columns = ", ".join(f"c{i} text" for i in range(len(header)))
            cursor.execute(f"CREATE TEMPORARY TABLE floor_{path.stem} ({columns}) ON COMMIT DROP")
            with path.open("rb") as fh:
                cursor.copy_expert(f"COPY floor_{path.stem} FROM STDIN WITH (FORMAT csv, HEADER true)", fh)
    return time.perf_counter() - start


SYNTHETIC = """
import os, sys
sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "registry.settings")
import django
django.setup()
from django.core.management import call_command
call_command("generate_synthetic", "--flush", *sys.argv[1:])
sys.stdout.flush()
print(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).strip())
"""

WRITTEN = (
    "accounts_site",
    "patients_consentversion",
    "patients_patient",
    "patients_consent",
    "procedures_procedure",
    "procedures_leakage",
    "procedures_complication",
    "outcomes_followup",
    "outcomes_medication",
    "audit_auditevent",
)


def child(script: str, *args: str) -> tuple[float, float, float, str]:
    """(seconds, peak RSS in MiB, CPU seconds, output) of a fresh process running `script`."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"child failed:\n{out[-3000:]}")
    peak = float(out.rsplit("VmHWM:", 1)[1].split()[0]) / 1024
    return elapsed, peak, usage.ru_utime + usage.ru_stime, out.rsplit("VmHWM:", 1)[0].strip()


def written_floor() -> tuple[float, int]:
    """(seconds, rows) to COPY every row the run wrote out as text and back into plain text tables."""
    from django.db import connection, transaction

    rows = 0
    start = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        for table in WRITTEN:
            buffer = io.StringIO()
            cursor.copy_expert(f"COPY {table} TO STDOUT", buffer)
            cursor.execute(f"SELECT * FROM {table} LIMIT 0")
            columns = ", ".join(f"c{i} text" for i in range(len(cursor.description)))
            cursor.execute(f"CREATE TEMPORARY TABLE floor_{table} ({columns}) ON COMMIT DROP")
            buffer.seek(0)
            cursor.copy_expert(f"COPY floor_{table} FROM STDIN", buffer)
            rows += buffer.getvalue().count("\n")
    return time.perf_counter() - start, rows


def trail_floor() -> tuple[float, float, int]:
    """(seconds with the chain trigger, seconds without, entries): the trail written again, rolled back."""
    from django.db import connection, transaction

    columns = "at, user_id, username, action, model, object_pk, object_repr, study_id, site_code, changes, reason, extra, hash"
    timings = []
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM audit_auditevent")
        entries = cursor.fetchone()[0]
    for target in ("audit_auditevent", "floor_trail"):
        with contextlib.suppress(RuntimeError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("CREATE TEMPORARY TABLE floor_trail (LIKE audit_auditevent INCLUDING ALL)")
            start = time.perf_counter()
            cursor.execute(f"INSERT INTO {target} ({columns}) SELECT {columns} FROM audit_auditevent")
            timings.append(time.perf_counter() - start)
            raise RuntimeError  # roll back
    return timings[0], timings[1], entries


def synthetic(args: argparse.Namespace) -> None:
    extra = ["--today", args.today] if args.today else []
    load = os.getloadavg()[0]
    elapsed, peak, used, out = child(SYNTHETIC, "--patients", str(args.synthetic), "--seed", str(args.seed), *extra)
    floor, rows = written_floor()
    print(f"  {out}")
    print(
        f"generate_synthetic (child process): {elapsed:8.1f} s   {rows / elapsed:10,.0f} rows/s   max RSS {peak:6.0f} MiB"
    )
    print(f"  (CPU of the process: {used:.1f} s; load average {load:.1f} before, {os.getloadavg()[0]:.1f} after)")
    print(f"floor, COPY of the {rows:,} rows written (trail included): {floor:6.1f} s   ratio {elapsed / floor:5.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--bundle", type=Path, help="import this bundle folder instead of generating one")
    parser.add_argument("--trail-floor", action="store_true", help="also time the trail's own insert (see above)")
    parser.add_argument("--synthetic", type=int, metavar="N", help="time generate_synthetic of N patients instead")
    parser.add_argument("--today", help="generate_synthetic's anchor date (with --synthetic)")
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command

    if args.synthetic:
        synthetic(args)
        return

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.bundle or make_bundle(Path(tmp) / "bundle", args.patients, args.seed)
        rows = {
            p.stem: sum(1 for _ in csv.reader(p.open(encoding="utf-8", newline=""))) - 1 for p in folder.glob("*.csv")
        }
        total = sum(rows.values())
        times, rss, cpu, floors = [], [], [], []
        for _ in range(args.repeat):
            call_command("flush", "--noinput", verbosity=0)
            elapsed, peak, used, out = import_child(folder)
            times.append(elapsed)
            cpu.append(used)
            rss.append(peak)
            floors.append(copy_floor(folder))
        size = sum(p.stat().st_size for p in folder.glob("*.csv"))
    print(f"bundle: {rows.get('patients', 0):,} patients, {total:,} rows, {size / 2**20:,.0f} MiB of CSV")
    print(f"  {out}")
    t, f = statistics.median(times), statistics.median(floors)
    print(f"import_bundle (child process): {t:8.1f} s   {total / t:10,.0f} rows/s   max RSS {max(rss):6.0f} MiB")
    print(f"  (CPU of the import process: {statistics.median(cpu):.1f} s; load average {os.getloadavg()[0]:.1f})")
    print(f"floor, COPY of the same rows:  {f:8.1f} s   {total / f:10,.0f} rows/s   ratio {t / f:5.1f}x")
    if args.repeat > 1:  # (on a shared machine one run's CPU speed can differ from the next's by half)
        print("  each run: " + ", ".join(f"{e:.1f} s ({c:.1f} s CPU)" for e, c in zip(times, cpu, strict=True)))
    if args.trail_floor:
        chained, plain, entries = trail_floor()
        print(
            f"the database's share: {entries:,} trail entries inserted again {chained:.1f} s with the chain trigger, "
            f"{plain:.1f} s without it (same indexes)"
        )


if __name__ == "__main__":
    main()
