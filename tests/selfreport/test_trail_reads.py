"""A patient's self-report reads in the trail: its list of medications is rows of another model, not a field."""

from decimal import Decimal

import pytest

from audit import display
from audit.models import AuditEvent
from selfreport import services
from selfreport.models import SelfReport

pytestmark = pytest.mark.django_db


def test_a_self_reports_medications_read_under_their_records_name(patient, nurse):
    link = services.create_link(patient=patient, timepoint="m1", user=nurse)
    services.submit_report(link=link, vas=Decimal("3"), odi=[1] * 10, medications=[("morphine", Decimal("30"))])
    event = AuditEvent.objects.get(model="selfreport.SelfReport", action=AuditEvent.Action.CREATE)
    (entry,) = display.readable([event])  # raised AttributeError (a reverse relation has no verbose_name): a 500
    by_field = {c.field: c for c in entry.changes}
    plural = str(SelfReport._meta.get_field("medications").related_model._meta.verbose_name_plural)
    assert by_field["medications"].label.casefold() == plural.casefold()
    assert "morphine" in by_field["medications"].new
    assert by_field["vas"].new == "3"
