"""Import benchmark: time and peak memory of import_bundle on a synthetic bundle.

Usage (PostgreSQL scratch database; it is emptied first):
    runuser -u postgres -- createdb -O registry registry_bench_import
    DATABASE_URL=postgres://registry:registry@127.0.0.1:5432/registry_bench_import \
        .venv/bin/python bench/import_benchmark.py --patients 2000

Prints rows per file, wall time and peak Python memory (tracemalloc) and RSS.
"""

import argparse
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "registry.settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command

    from exchange.importer import import_bundle
    from tests.bundles import write_bundle

    call_command("flush", "--noinput", verbosity=0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_bundle(Path(tmp) / "bundle", patients=args.patients, seed=args.seed)
        rows = sum(sum(1 for _ in f.open()) - 1 for f in folder.glob("*.csv"))
        tracemalloc.start()
        start = time.perf_counter()
        result = import_bundle(folder)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"patients: {args.patients}  rows: {rows}  ({', '.join(f'{k} {v}' for k, v in result.counts.items())})")
    print(f"import time: {elapsed:.1f} s  ({rows / elapsed:,.0f} rows/s)")
    print(f"peak Python memory (tracemalloc): {peak / 2**20:.0f} MiB   max RSS: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
