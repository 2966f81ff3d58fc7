"""The nurse's review page reads a self-report's numbers as the patient entered them (registry.measures)."""

import re
from decimal import Decimal

import pytest

from selfreport import services

pytestmark = pytest.mark.django_db


def test_the_review_reads_vas_and_doses_as_entered(client, patient, nurse):
    link = services.create_link(patient=patient, timepoint="m1", user=nurse)
    report = services.submit_report(
        link=link, vas=Decimal("7"), odi=[2] * 10, medications=[("morphine", Decimal("60"))]
    )
    client.force_login(nurse)
    html = client.get(f"/selfreport/reports/{report.pk}/").content.decode()
    assert re.search(r"<td>7</td>", html)  # the summary: 7, not 7.0
    assert re.search(r'name="vas"[^>]*value="7"', html)  # the correction form starts from the same value
    assert re.search(r'value="60"', html) and "6E+1" not in html and "60.000" not in html
    assert str(report.medications.get()) == "Morphine 60"
