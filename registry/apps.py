from axes.apps import AppConfig as AxesAppConfig
from django.contrib.admin.apps import AdminConfig
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop


class RegistryAxesConfig(AxesAppConfig):
    """django-axes under a name people read ("Log-in attempts", not "Axes")."""

    verbose_name = _("Log-in attempts")


# django-axes ships no Chinese: the names its models give the admin pages we show
# (audit/admin_accounts.py) are translated in our catalogue (locale/), which
# gettext merges with every other catalogue of the "django" domain.
AXES_NAMES = (
    gettext_noop("access attempt"),
    gettext_noop("access attempts"),
    gettext_noop("access failure"),
    gettext_noop("access failures"),
    gettext_noop("access attempt expiration"),
    gettext_noop("access attempt expirations"),
    gettext_noop("access log"),
    gettext_noop("access logs"),
    gettext_noop("Attempt Time"),
    gettext_noop("Username"),
    gettext_noop("IP Address"),
    gettext_noop("User Agent"),
    gettext_noop("Path"),
    gettext_noop("Failed Logins"),
    gettext_noop("HTTP Accept"),
    gettext_noop("GET Data"),
    gettext_noop("POST Data"),
    gettext_noop("Access lock out"),
)


class RegistryAdminConfig(AdminConfig):
    default_site = "registry.admin.RegistryAdminSite"
