from django.apps import AppConfig


class SelfreportConfig(AppConfig):
    name = "selfreport"
    verbose_name = "Patient self-report and notifications"
