"""Errors that services raise and every form knows how to show."""

from typing import Any

from django.utils.translation import gettext as _


class StaleEditError(Exception):
    """Somebody else saved the record after this editor loaded it."""

    def __init__(self, instance: Any) -> None:
        self.instance = instance
        super().__init__(
            _(
                "%(record)s was changed by someone else while you were editing it. "
                "Reload the page to see their version, then make your change again."
            )
            % {"record": instance}
        )
