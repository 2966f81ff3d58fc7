"""Files read the same whatever the page's language (issue 16): ISO dates and dot decimals, as in
English. The pages around them follow the reader's language; the CSVs are for programs."""

import datetime
import re
from decimal import Decimal

import pytest
from django.utils import translation

from audit.services import save_audited
from tests.factories import ConsentFactory, PatientFactory, ProcedureFactory

pytestmark = pytest.mark.django_db
ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}


@pytest.fixture(autouse=True)
def _english_afterwards():
    yield
    translation.deactivate()  # a request leaves its language active in this thread


@pytest.fixture
def case(site, nurse):
    patient = PatientFactory(site=site, enrolment_date=datetime.date(2024, 3, 1))
    ConsentFactory(patient=patient, signed_date=datetime.date(2024, 3, 1))
    procedure = ProcedureFactory.build(
        patient=patient, procedure_date=datetime.date(2024, 3, 3), cement_volume_ml=Decimal("6.5")
    )
    save_audited(procedure, user=nurse)  # through the service: into the trail
    return patient


def clinical_rows(csv_text: str) -> list[str]:
    """The trail CSV's rows of clinical changes (each download adds its own export row)."""
    return [line for line in csv_text.splitlines() if ",procedures." in line or ",patients." in line]


def body(response) -> str:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return content.decode("utf-8-sig")


@pytest.mark.parametrize("path", ["/audit/consents/register.csv", "/audit/trail.csv"])
def test_an_admins_csv_asked_for_in_chinese_is_the_english_one(client, admin_user, case, path):
    client.force_login(admin_user)
    english, chinese = body(client.get(path, HTTP_ACCEPT_LANGUAGE="en")), body(client.get(path, **ZH))
    if path == "/audit/trail.csv":
        english, chinese = "\n".join(clinical_rows(english)), "\n".join(clinical_rows(chinese))
    assert chinese == english
    assert "2024-03-0" in chinese  # the consent's (register) or the procedure's (trail) date, ISO
    assert not re.search(r"2024年|3月", chinese)


def test_the_trail_csv_keeps_dot_decimals_in_chinese(client, admin_user, case):
    client.force_login(admin_user)
    text = body(client.get("/audit/trail.csv", **ZH))
    volume = [line for line in clinical_rows(text) if ",cement_volume_ml," in line]
    assert len(volume) == 1 and volume[0].split(",")[11] == "6.5"  # new_value, as stored, with a dot
