import datetime
import re

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from procedures.models import Procedure
from tests.factories import ConsentFactory, LeakageFactory, PatientFactory, ProcedureFactory

pytestmark = pytest.mark.django_db
TODAY = datetime.date.today()


def management(prefix: str, total: int, initial: int = 0) -> dict[str, str]:
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def procedure_data(**overrides) -> dict:
    day = TODAY - datetime.timedelta(days=2)
    data = {
        "procedure_date": day.isoformat(),
        "admission_date": (day - datetime.timedelta(days=1)).isoformat(),
        "discharge_date": (day + datetime.timedelta(days=1)).isoformat(),
        "operator": "IR02",
        "approach": "interpedicular",
        "guidance": "ct",
        "anaesthesia": "local",
        "needle_gauge": "13",
        "needle_count": "2",
        "levels_treated": ["S1", "S2"],
        "cement_volume_ml": "5.5",
        "operation_time_min": "50",
        "technical_success": "True",
        **management("leak", 2),
        "leak-0-site": "foraminal",
        "leak-0-symptomatic": "False",
        "leak-0-treatment_required": "False",
        **management("comp", 1),
        "comp-0-type": "urinary_retention",
        "comp-0-onset_date": day.isoformat(),
        "comp-0-cirse_grade": "2",
        "comp-0-resolved": "True",
    }
    return data | overrides


@pytest.fixture
def consented(site):
    patient = PatientFactory(site=site, enrolment_date=TODAY - datetime.timedelta(days=10))
    ConsentFactory(patient=patient)
    return patient


def test_a_procedure_with_two_levels_a_leakage_and_a_complication(client, nurse, consented):
    client.force_login(nurse)
    response = client.post(reverse("procedures:create", args=[consented.study_id]), procedure_data())
    assert response.status_code == 302
    procedure = Procedure.objects.get()
    assert procedure.levels_treated == "S1|S2" and procedure.procedure_number == 1
    assert procedure.leakage is True  # derived from the rows
    assert [(lk.site, lk.symptomatic) for lk in procedure.leakages.all()] == [("foraminal", False)]
    assert procedure.complications.get().severity == "minor"
    page = client.get(response.url).content.decode()
    assert "S1–S2" in page and "Sacral foramen (asymptomatic)" in page and "Urinary retention (minor, CIRSE 2)" in page


def test_discharge_before_admission_is_refused_at_the_field_and_the_rows_stay(client, nurse, consented):
    client.force_login(nurse)
    day = TODAY - datetime.timedelta(days=2)
    data = procedure_data(discharge_date=(day - datetime.timedelta(days=3)).isoformat())
    page = client.post(reverse("procedures:create", args=[consented.study_id]), data).content.decode()
    assert "Discharge cannot be before admission." in page and 'role="alert"' in page
    assert 'value="IR02"' in page and 'value="foraminal" selected' in page and 'value="S2"' in page
    assert re.search(r'<input type="checkbox" name="levels_treated" value="S2"[^>]*checked', page)
    assert not Procedure.objects.exists()


def test_editing_a_procedure_changes_its_leakage_row_in_place_with_the_reason_in_the_trail(client, nurse, consented):
    procedure = ProcedureFactory(patient=consented, leakage=True, procedure_date=TODAY - datetime.timedelta(days=2))
    leak = LeakageFactory(procedure=procedure, site="presacral", symptomatic=False)
    client.force_login(nurse)
    url = reverse("procedures:edit", args=[procedure.pk])
    assert 'value="presacral" selected' in client.get(url).content.decode()
    data = procedure_data(**management("leak", 2, initial=1), **{"leak-0-site": "venous", "leak-0-symptomatic": "True"})
    data |= {"leak-0-id": str(leak.pk), "leak-0-version": "1", "leak-0-treatment_required": "False"}
    data |= {"version": "1", "reason": "CT re-read by radiologist"}
    data = {k: v for k, v in data.items() if not k.startswith("comp-0-")}  # no complication this time
    response = client.post(url, data)
    assert response.status_code == 302
    assert [(lk.pk, lk.site, lk.version) for lk in procedure.leakages.all()] == [(leak.pk, "venous", 2)]
    leak_events = AuditEvent.objects.filter(model="procedures.Leakage", action__in=["update", "delete", "create"])
    assert [(e.action, e.changes) for e in leak_events.exclude(reason="")] == [
        ("update", {"site": ["presacral", "venous"], "symptomatic": [False, True]})
    ]
    reasons = set(
        AuditEvent.objects.filter(study_id=consented.study_id, action__in=["update", "delete", "create"])
        .exclude(reason="")
        .values_list("reason", flat=True)
    )
    assert reasons == {"CT re-read by radiologist"}
    assert (
        "CT re-read by radiologist"
        in client.get(reverse("patients:detail", args=[consented.study_id])).content.decode()
    )


def test_a_leakage_site_listed_twice_is_refused(client, nurse, consented):
    client.force_login(nurse)
    data = procedure_data(
        **{"leak-1-site": "foraminal", "leak-1-symptomatic": "True", "leak-1-treatment_required": "False"}
    )
    page = client.post(reverse("procedures:create", args=[consented.study_id]), data).content.decode()
    assert "Sacral foramen: list each leakage site once." in page
    assert not Procedure.objects.exists()


def test_no_procedure_without_valid_consent(client, nurse, site):
    patient = PatientFactory(site=site)
    client.force_login(nurse)
    url = reverse("procedures:create", args=[patient.study_id])
    assert "No consent is recorded" in client.get(url).content.decode()
    assert "No consent is recorded" in client.post(url, procedure_data()).content.decode()
    assert not Procedure.objects.exists()
