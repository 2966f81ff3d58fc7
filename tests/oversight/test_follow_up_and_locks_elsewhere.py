"""End of follow-up, closing long-missed visits from the worklist, the lock against import --update,
the locked-only cohort filter, and the demo cohort starting with a clean worklist."""

import csv
import datetime
import json
import shutil
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from outcomes.cohort import filtered_patients
from outcomes.models import FollowUp
from oversight import services
from patients.models import CaseLock, Patient
from patients.services import end_follow_up
from registry import dates
from tests.conftest import DEMO_BUNDLE
from tests.exchange.zips import export
from tests.factories import PASSWORD, ConsentFactory, PatientFactory, ProcedureFactory

pytestmark = pytest.mark.django_db


def _case(site, procedure_days_ago):
    today = dates.today()
    patient = PatientFactory(site=site, enrolment_date=today - datetime.timedelta(days=procedure_days_ago + 5))
    ConsentFactory(patient=patient)
    ProcedureFactory(patient=patient, procedure_date=today - datetime.timedelta(days=procedure_days_ago))
    return patient


def test_ended_patients_leave_the_worklist_and_the_end_is_audited(client, site, nurse):
    patient = _case(site, 40)  # baseline, post and w1 overdue, m1 due
    client.force_login(nurse)
    assert patient.study_id in client.get("/patients/worklist/").content.decode()
    bad = client.post(f"/audit/patients/{patient.study_id}/end-follow-up/", {"on": dates.today(), "reason": "other"})
    assert bad.status_code == 400 and "Explain the reason" in bad.content.decode()
    client.post(
        f"/audit/patients/{patient.study_id}/end-follow-up/",
        {"on": dates.today().isoformat(), "reason": "transferred", "note": "moved to Xi'an"},
    )
    patient.refresh_from_db()
    assert patient.follow_up_ended == dates.today() and patient.follow_up_end_reason == "transferred"
    assert "Follow-up ended on" in client.get(f"/patients/{patient.study_id}/").content.decode()  # shows the flash too
    assert patient.study_id not in client.get("/patients/worklist/").content.decode()
    event = AuditEvent.objects.get(model="patients.Patient", action="update", study_id=patient.study_id)
    assert event.reason == "Follow-up ended: Transferred to another centre (moved to Xi'an)"
    assert event.changes["follow_up_ended"] == [None, dates.today().isoformat()]
    assert "Not due (follow-up ended)" in client.get(f"/patients/{patient.study_id}/").content.decode()


def test_end_of_follow_up_refuses_a_future_date_or_a_bad_reason(site, nurse):
    patient = _case(site, 40)
    with pytest.raises(ValidationError, match="today or earlier"):
        end_follow_up(
            patient=patient,
            on=dates.today() + datetime.timedelta(days=1),
            reason="other",
            note="x",
            user=nurse,
            expected_version=patient.version,
        )
    with pytest.raises(ValidationError, match="Choose why"):
        end_follow_up(patient=patient, on=dates.today(), reason="bored", user=nurse, expected_version=patient.version)


def test_close_as_missed_from_the_worklist_in_one_action_with_a_reason(client, site, nurse, settings):
    settings.WORKLIST_MISSED_AFTER_DAYS = 30
    patient = _case(site, 80)  # w1 window closed 70 days ago, m1 window 35 days ago, m3 open
    client.force_login(nurse)
    page = client.get("/patients/worklist/").content.decode()
    assert 'id="long-missed"' in page
    assert (
        client.post("/audit/visits/close-missed/", {"study_id": patient.study_id, "timepoint": "w1"}).status_code == 302
    )
    assert not FollowUp.objects.exists()  # no reason, nothing written
    client.post("/audit/visits/close-missed/", {"study_id": patient.study_id, "timepoint": "m3", "reason": "x"})
    assert not FollowUp.objects.exists()  # window still open: refused
    client.post(
        "/audit/visits/close-missed/",
        {"study_id": patient.study_id, "timepoint": "w1", "reason": "No answer to 3 calls"},
    )
    visit = FollowUp.objects.get()
    assert (visit.timepoint, visit.status) == ("w1", "missed")
    event = AuditEvent.objects.get(model="outcomes.FollowUp", action="create")
    assert event.username == "nurse" and event.reason == "Closed as missed: No answer to 3 calls"


def test_import_update_is_refused_on_a_locked_case_and_the_locked_only_filter(
    client, tmp_path, nurse, investigator, site
):
    source = tmp_path / "source"
    shutil.copytree(DEMO_BUNDLE, source)
    call_command("import_bundle", str(source), stdout=StringIO())
    folder = tmp_path / "exported"
    export(level="identified", reason="corrections").extractall(folder)
    patient = Patient.objects.get(study_id="PSP-0003")
    investigator.sites.add(patient.site)
    services.sign_lock(patient=patient, user=investigator, password=PASSWORD, meaning=CaseLock.MEANING)
    assert list(filtered_patients(None, {"locked_only": "true"})) == [patient]
    assert filtered_patients(None, {}).count() == 10
    client.force_login(investigator)
    locked = json.loads(client.get("/dashboard/summary.json?locked_only=on").content)
    everyone = json.loads(client.get("/dashboard/summary.json").content)
    assert (locked["cohort"]["patients"], everyone["cohort"]["patients"]) == (1, 10)
    exported_locked = export(level="identified", reason="locked", filters={"locked_only": True})
    assert [r["study_id"] for r in csv.DictReader(StringIO(exported_locked.read("patients.csv").decode()))] == [
        "PSP-0003"
    ]

    path = folder / "followups.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    row = next(r for r in rows if r["study_id"] == "PSP-0003" and r["timepoint"] == "post")
    row["vas"] = "1.0" if row["vas"] != "1.0" else "2.0"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    before = AuditEvent.objects.count()
    err = StringIO()
    with pytest.raises(CommandError):
        call_command(
            "import_bundle", str(folder), "--update", "--reason", "r", "--user", "nurse", stderr=err, stdout=StringIO()
        )
    assert "PSP-0003: the case is locked" in err.getvalue()
    assert AuditEvent.objects.count() == before
    assert str(FollowUp.objects.get(patient=patient, timepoint="post").vas) != row["vas"]


def test_the_demo_cohort_starts_with_a_clean_worklist_and_unchanged_survival(client, nurse):
    call_command("import_bundle", str(DEMO_BUNDLE), stdout=StringIO())
    client.force_login(nurse)
    nurse.sites.add(*[p.site for p in Patient.objects.all()[:1]])
    survival_before = json.loads(client.get("/dashboard/summary.json").content).get("survival")
    from exchange.management.commands.load_demo import end_demo_follow_up

    assert end_demo_follow_up() == 10
    assert Patient.objects.filter(follow_up_ended=None).count() == 0
    post = {v.patient_id: v.visit_date for v in FollowUp.objects.filter(timepoint="post")}
    assert all(p.follow_up_ended == post[p.pk] for p in Patient.objects.all())
    body = client.get("/patients/worklist/").content.decode()
    assert not any(p.study_id in body for p in Patient.objects.all())
    assert json.loads(client.get("/dashboard/summary.json").content).get("survival") == survival_before
    assert end_demo_follow_up() == 0  # idempotent (load_demo on an existing cohort)


def test_long_missed_lists_only_windows_closed_long_ago_oldest_first_whatever_the_cohort_size(site, nurse, settings):
    from oversight.monitoring_views import long_missed

    settings.WORKLIST_MISSED_AFTER_DAYS = 30
    for days in range(20, 320, 3):  # 100 patients, procedures 20 to 317 days ago
        _case(site, days)
    today = dates.today()
    got = long_missed(nurse, today, limit=500)
    # by hand: a visit is listed when procedure + window end < today - 30, i.e. days ago > high + 30
    highs = {"baseline": 0, "post": 3, "w1": 10, "m1": 45, "m3": 105, "m6": 210, "m12": 400}
    expected = sum(days > high + 30 for days in range(20, 320, 3) for high in highs.values())
    assert len(got) == expected
    assert [v["closes"] for v in got] == sorted(v["closes"] for v in got)
    assert all(v["closes"] < today - datetime.timedelta(days=30) for v in got)
    assert len(long_missed(nurse, today)) == 50 and long_missed(nurse, today)[0] == got[0]
