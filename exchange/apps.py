from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


def _install_export_cache(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    """After every migrate (and flush): the export cache's functions from the running code."""
    from exchange import export_cache

    export_cache.install(using)


class ExchangeConfig(AppConfig):
    name = "exchange"
    verbose_name = _("Import and export")

    def ready(self) -> None:
        post_migrate.connect(_install_export_cache, sender=self, dispatch_uid="exchange_export_cache")
