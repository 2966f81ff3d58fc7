"""Many nurses at once: N nurses log in and work through their visits against gunicorn.

On a scratch database (its name must contain "bench" or "load": the script adds users,
patients and visits), the script

1. makes N nurse accounts (`loadnurse01`...; nurses log in without a second factor,
   accounts.User.requires_second_factor) spread over the database's sites, and for each
   nurse P new patients enrolled 400 days ago through the services (patient, consent,
   index procedure, each with its trail entry), so all six follow-up windows are open;
2. collects the static files and starts `gunicorn registry.wsgi -w W` on 127.0.0.1 (DEBUG
   off, as in production), unless `--url` names a server already running on this machine;
3. runs one thread per nurse: log in through the log-in form, then for each of her
   patients' follow-up visits (post, w1, m1, m3, m6, m12, dated in the window): open the
   worklist, the patient page and the visit form, save the visit (a POST that must answer
   302 to the patient page) and open the page she lands on; at most `--iterations`
   visits per nurse, so the run is bounded;
4. prints p50/p95/max per step and the errors, and then counts in the database that every
   visit saved is there exactly once, with exactly one CREATE entry in the trail.

    runuser -u postgres -- createdb -O registry -T registry_bench_100k registry_bench_load
    export DATABASE_URL=postgres://registry:registry@127.0.0.1:5432/registry_bench_load
    DJANGO_DEBUG=True .venv/bin/python manage.py migrate
    .venv/bin/python bench/load_test.py --nurses 20 --workers 4 --iterations 6

Written on the standard library (threads, http.client) rather than locust: the script must
also create its accounts and patients through the registry's own services and check the
database afterwards, which a locust file would do with the same Django code; the HTTP side is
forty lines. Only 127.0.0.1 is ever contacted.
"""

import argparse
import contextlib
import datetime
import html
import http.client
import os
import random
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from http.cookies import SimpleCookie
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "registry.settings")

STEPS = ("login", "worklist", "patient", "visit_form", "save", "after_save")
TIMEPOINTS = ("post", "w1", "m1", "m3", "m6", "m12")
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


# ----------------------------------------------------------------------------- set-up (Django, in-process)


def set_up(nurses: int, per_nurse: int, today: datetime.date) -> tuple[str, list[tuple[str, list[tuple]]]]:
    """Create the nurses and their patients; return the password and [(username, [(study_id, tp, date)])]."""
    import django

    django.setup()
    from django.db import connection

    from accounts.models import Site, User
    from patients.models import Consent, Patient
    from patients.services import current_version, enrol_patient, record_consent
    from procedures.models import Procedure
    from procedures.services import record_procedure
    from registry.scoring import VISIT_WINDOWS

    name = connection.settings_dict["NAME"]
    if "bench" not in name and "load" not in name:
        sys.exit(f"refusing to write into {name!r}: use a scratch database whose name contains 'bench' or 'load'")
    sites = list(Site.objects.order_by("code"))
    if not sites:
        sites = [Site.objects.create(code="LD", name="Load test hospital")]
    version = current_version()
    if version is None:
        sys.exit("no current consent version: load a cohort first (generate_synthetic)")
    password = secrets.token_urlsafe(12)
    enrolled = today - datetime.timedelta(days=400)
    index = enrolled + datetime.timedelta(days=1)
    plan = []
    for n in range(1, nurses + 1):
        site = sites[(n - 1) % len(sites)]
        user, _ = User.objects.get_or_create(username=f"loadnurse{n:02d}", defaults={"role": User.Role.NURSE})
        user.role = User.Role.NURSE
        user.set_password(password)
        user.save()
        user.sites.set([site])
        tasks = []
        for _ in range(per_nurse):
            patient = enrol_patient(
                patient=Patient(
                    site=site,
                    enrolment_date=enrolled,
                    full_name=f"Load Test {secrets.token_hex(3)}",
                    mrn=f"LT{secrets.token_hex(5)}",
                    date_of_birth=datetime.date(1955, 6, 1),
                    sex="F",
                    primary_tumour="lung",
                    lesion_character="osteolytic",
                    pathological_fracture=False,
                    denis_zones="I|II",
                    neurological_deficit=False,
                    symptom_onset_date=enrolled - datetime.timedelta(days=40),
                    imaging_date=enrolled - datetime.timedelta(days=3),
                    imaging_modality="ct",
                    prior_radiotherapy=False,
                    prior_chemotherapy=True,
                ),
                user=user,
            )
            record_consent(
                consent=Consent(
                    patient=patient,
                    consent_version=version,
                    signed_date=enrolled,
                    obtained_by="RN01",
                    scope_registry=True,
                    scope_future_contact=True,
                ),
                user=user,
            )
            record_procedure(
                procedure=Procedure(
                    patient=patient,
                    procedure_number=1,
                    procedure_date=index,
                    operator="IR01",
                    approach="interpedicular",
                    guidance="ct",
                    anaesthesia="local",
                    needle_gauge=13,
                    needle_count=1,
                    levels_treated="S1|S2",
                    cement_volume_ml="6.0",
                    operation_time_min=45,
                    technical_success=True,
                    leakage=False,
                    admission_date=index,
                    discharge_date=index + datetime.timedelta(days=2),
                ),
                user=user,
            )
            for tp in TIMEPOINTS:
                low, high = VISIT_WINDOWS[tp]
                tasks.append((patient.study_id, tp, index + datetime.timedelta(days=(low + high) // 2)))
        # visit by visit as a nurse works: all patients' post visits, then w1...
        tasks.sort(key=lambda t: (TIMEPOINTS.index(t[1]), t[0]))
        plan.append((user.username, tasks))
    connection.close()  # the threads below talk HTTP only; the check at the end reconnects
    return password, plan


def check_saved(saved: list[tuple[str, str]], plan: list[tuple[str, list[tuple]]]) -> list[str]:
    """Every saved visit is in the database exactly once, with one CREATE entry in the trail; the
    load test's patients hold no other visit."""
    from django.db.models import Count

    from audit.models import AuditEvent
    from outcomes.models import FollowUp

    study_ids = {sid for _, tasks in plan for sid, _, _ in tasks}
    rows = FollowUp.objects.filter(patient__study_id__in=study_ids).values_list("patient__study_id", "timepoint", "pk")
    problems = []
    stored: dict[tuple[str, str], list[int]] = {}
    for sid, tp, pk in rows:
        stored.setdefault((sid, tp), []).append(pk)
    for key in saved:
        if len(stored.get(key, [])) != 1:
            problems.append(f"{key}: {len(stored.get(key, []))} visits stored")
    for key in set(stored) - set(saved):
        problems.append(f"{key}: stored but never answered as saved")
    pks = [str(pk) for pks in stored.values() for pk in pks]
    entries = dict(
        AuditEvent.objects.filter(model="outcomes.FollowUp", action=AuditEvent.Action.CREATE, object_pk__in=pks)
        .values_list("object_pk")
        .annotate(n=Count("id"))
    )
    problems += [f"visit {pk}: {entries.get(pk, 0)} CREATE entries in the trail" for pk in pks if entries.get(pk) != 1]
    return problems


# ----------------------------------------------------------------------------- HTTP (one thread per nurse)


class Browser:
    """Cookies and CSRF as a browser keeps them, one connection per request (gunicorn's sync workers
    close the connection after each response). The Secure cookies of a DEBUG-off server are sent back
    over plain HTTP: only 127.0.0.1 is contacted."""

    def __init__(self, host: str, port: int, timings: list, think: float = 0.0) -> None:
        self.host, self.port, self.cookies, self.timings, self.think = host, port, {}, timings, think
        self.random = random.Random()  # each nurse her own pace

    def request(self, step: str, method: str, path: str, form: dict | None = None, expect: int = 200) -> str:
        if self.think:  # a person reads the page before the next click: 0.5x to 1.5x `think` seconds
            time.sleep(self.think * self.random.uniform(0.5, 1.5))
        body = urllib.parse.urlencode(form).encode() if form is not None else None
        headers = {"Host": self.host, "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if body is not None:
            headers |= {"Content-Type": "application/x-www-form-urlencoded", "Referer": f"http://{self.host}{path}"}
        started = time.perf_counter()
        status, text, location = 0, "", ""
        try:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
            status, location = response.status, response.getheader("Location", "")
            for header in response.headers.get_all("Set-Cookie") or []:
                for name, morsel in SimpleCookie(header).items():
                    self.cookies[name] = morsel.value
            conn.close()
        except OSError as exc:
            text = repr(exc)
        elapsed = time.perf_counter() - started
        ok = status == expect
        self.timings.append((step, elapsed, ok, f"{method} {path} -> {status} {text[:200] if not ok else ''}"))
        return location if expect == 302 and ok else (text if ok else "")


def nurse_run(
    host: str, port: int, username: str, password: str, tasks: list, out: dict, lock: threading.Lock, think: float
) -> None:
    timings: list = []
    saved: list[tuple[str, str]] = []
    b = Browser(host, port, timings, think)
    page = b.request("login", "GET", "/accounts/login/")
    token = CSRF.search(page)
    if token and b.request(
        "login",
        "POST",
        "/accounts/login/",
        {"username": username, "password": password, "csrfmiddlewaretoken": html.unescape(token[1])},
        expect=302,
    ):
        for sid, tp, day in tasks:
            quoted = urllib.parse.quote(sid)
            b.request("worklist", "GET", "/patients/worklist/")
            b.request("patient", "GET", f"/patients/{quoted}/")
            form = b.request("visit_form", "GET", f"/visits/{quoted}/{tp}/")
            token = CSRF.search(form)
            if not token:
                continue
            data = {
                "csrfmiddlewaretoken": html.unescape(token[1]),
                "status": "completed",
                "visit_date": day.isoformat(),
                "vas": "5.5",
                **{f"odi_q{n}": "2" for n in range(1, 11)},
                "med-TOTAL_FORMS": "1",
                "med-INITIAL_FORMS": "0",
                "med-MIN_NUM_FORMS": "0",
                "med-MAX_NUM_FORMS": "1000",
                "med-0-drug": "morphine",
                "med-0-daily_dose": "30",
            }
            location = b.request("save", "POST", f"/visits/{quoted}/{tp}/", data, expect=302)
            if location:
                saved.append((sid, tp))
                b.request("after_save", "GET", urllib.parse.urlsplit(location).path)
    with lock:
        out["timings"].extend(timings)
        out["saved"].extend(saved)


# ----------------------------------------------------------------------------- gunicorn


@contextlib.contextmanager
def gunicorn(workers: int, port: int, log: Path, proxied: int | None = None):
    env = {
        **os.environ,
        "DJANGO_DEBUG": "False",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "SECURE_SSL_REDIRECT": "False",
        "ALLOWED_HOSTS": "127.0.0.1",
        "AXES_ADDRESS_FAILURE_LIMIT": "1000",  # twenty nurses behind one address
        "TRUSTED_PROXY_COUNT": "1" if proxied else "0",
    }
    # DEBUG off serves the collected, hashed static files: collect them first (a clean clone has none,
    # and every page would answer 500 for want of the manifest)
    manage = [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"]
    subprocess.run(manage, cwd=ROOT, env=env, check=True)
    cmd = [sys.executable, "-m", "gunicorn", "registry.wsgi", "-w", str(workers), "-b", f"127.0.0.1:{port}"]
    with log.open("w") as fh:
        proc = subprocess.Popen([*cmd, "--timeout", "300"], cwd=ROOT, env=env, stdout=fh, stderr=fh)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"gunicorn did not start: see {log}")
            time.sleep(0.5)
        time.sleep(2)  # every worker booted (the master listens before the workers are up)
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the given processes so far (Linux /proc; 0 for those gone)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def server_pids(master: int | None) -> tuple[list[int], list[int]]:
    """(gunicorn workers, PostgreSQL backends of this database other than this script's)."""
    workers = []
    if master is not None:
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
            workers = [int(pid) for pid in children]
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        backends = [pid for (pid,) in cursor.fetchall()]
    connection.close()
    return workers, backends


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nurses", type=int, default=20)
    parser.add_argument("--patients-per-nurse", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=6, help="visits saved per nurse (at most)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--think", type=float, default=0.0, help="seconds a nurse reads each page (mean)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--url", help="a server already running on 127.0.0.1 (default: start gunicorn)")
    parser.add_argument(
        "--proxy-port", type=int, help="send the requests to a reverse proxy on this port that forwards to --port"
    )
    args = parser.parse_args()

    per_nurse = max(args.patients_per_nurse, -(-args.iterations // len(TIMEPOINTS)))
    started = time.perf_counter()
    password, plan = set_up(args.nurses, per_nurse, datetime.date.today())
    print(f"set-up: {args.nurses} nurses, {per_nurse} patients each, {time.perf_counter() - started:.1f} s")
    out: dict = {"timings": [], "saved": []}
    lock = threading.Lock()
    host, port = "127.0.0.1", args.port
    server = contextlib.nullcontext()
    if args.url:
        parts = urllib.parse.urlsplit(args.url)
        if parts.hostname != "127.0.0.1":
            sys.exit("--url must be on 127.0.0.1")
        port = parts.port or 80
    else:
        (ROOT / "bench" / "out").mkdir(exist_ok=True)
        server = gunicorn(args.workers, port, ROOT / "bench" / "out" / "load_test_gunicorn.log", args.proxy_port)
        port = args.proxy_port or port
    with server as master:
        load_before = os.getloadavg()
        workers, _ = server_pids(master)
        cpu_before = cpu_seconds(workers)
        threads = [
            threading.Thread(
                target=nurse_run, args=(host, port, user, password, tasks[: args.iterations], out, lock, args.think)
            )
            for user, tasks in plan
        ]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        load_after = os.getloadavg()
        # the backends are the workers' persistent connections (CONN_MAX_AGE), all opened during the run
        workers, backends = server_pids(master)
        app_cpu, db_cpu = cpu_seconds(workers) - cpu_before, cpu_seconds(backends)

    timings = out["timings"]
    print(
        f"{args.nurses} nurses at once, {args.workers} gunicorn workers, {len(timings)} requests in {wall:.1f} s "
        f"({len(timings) / wall:.1f} requests/s); load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print(f"{'step':<12}{'n':>6}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'errors':>8}")
    for step in STEPS:
        times = [t * 1000 for s, t, _, _ in timings if s == step]
        if times:
            errors = sum(1 for s, _, ok, _ in timings if s == step and not ok)
            print(
                f"{step:<12}{len(times):>6}{percentile(times, 50):>9.0f}{percentile(times, 95):>9.0f}"
                f"{max(times):>9.0f}{errors:>8}"
            )
    if args.url is None:
        requests = max(len(timings), 1)
        print(
            f"CPU used by the run: gunicorn workers {app_cpu:.1f} s, PostgreSQL backends {db_cpu:.1f} s "
            f"= {1000 * (app_cpu + db_cpu) / requests:.0f} ms per request on average (log-ins included)"
        )
    errors = [what for _, _, ok, what in timings if not ok]
    for what in errors[:10]:
        print("  error:", what)
    expected = sum(min(args.iterations, len(tasks)) for _, tasks in plan)
    problems = check_saved(out["saved"], plan)
    print(
        f"visits saved: {len(out['saved'])} of {expected}; in the database exactly once with one trail entry: ", end=""
    )
    print("yes" if not problems else f"NO ({len(problems)} problems)")
    for problem in problems[:10]:
        print("  ", problem)
    sys.exit(1 if errors or problems or len(out["saved"]) != expected else 0)


if __name__ == "__main__":
    main()
