"""Dates are calendar days in the sites' time zone (TIME_ZONE), for models, forms and worklists alike."""

import datetime

import pytest
from django.core.exceptions import ValidationError

from registry.dates import today
from registry.fields import not_in_future


@pytest.mark.parametrize("zone, offset_hours", [("Pacific/Kiritimati", 14), ("Pacific/Pago_Pago", -11)])
def test_today_is_the_date_in_the_configured_zone_not_the_servers(settings, zone, offset_hours):
    settings.TIME_ZONE = zone  # zones without daylight saving: the offset is fixed all year
    utc_now = datetime.datetime.now(datetime.UTC)
    expected = (utc_now + datetime.timedelta(hours=offset_hours)).date()
    assert today() == expected
    not_in_future(expected)  # a visit of "today" at the site is accepted whatever the server's date
    with pytest.raises(ValidationError, match="future"):
        not_in_future(expected + datetime.timedelta(days=1))
