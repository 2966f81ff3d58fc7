"""The registry's calendar: one `today()` for models, forms, worklists and imports.

Clinical dates are calendar days at the site, so "today" is the date in the
configured `TIME_ZONE` (settings, from the environment), never the server's
or UTC's date: a Beijing nurse at 07:30 records today's visit as today.
"""

import datetime

from django.utils import timezone


def today() -> datetime.date:
    return timezone.localdate()
