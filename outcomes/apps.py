from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OutcomesConfig(AppConfig):
    name = "outcomes"
    verbose_name = _("Follow-up")

    def ready(self) -> None:
        from outcomes import checks  # noqa: F401  (registers the ODI setting check)
