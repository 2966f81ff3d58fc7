from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SelfreportConfig(AppConfig):
    name = "selfreport"
    verbose_name = _("Patient self-report and notifications")
