"""Import benchmark: wall time and peak RSS of `manage.py import_bundle` (a child process) on a
synthetic bundle, beside a same-run floor: COPY of the same CSV rows into plain text tables.

Usage (PostgreSQL scratch database; it is emptied first):
    runuser -u postgres -- createdb -O registry registry_bench_imp
    export DATABASE_URL=postgres://registry:registry@127.0.0.1:5432/registry_bench_imp DJANGO_DEBUG=True
    .venv/bin/python manage.py migrate
    .venv/bin/python bench/import_benchmark.py --patients 10000 [--bundle DIR] [--repeat 3]

The bundle comes from tests/bundles.py write_bundle; `--bundle DIR` imports a bundle you made (e.g. an
identified export of a `generate_synthetic` cohort). Figures are medians of `--repeat`.
"""

import argparse
import csv
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--bundle", type=Path, help="import this bundle folder instead of generating one")
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command

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


if __name__ == "__main__":
    main()
