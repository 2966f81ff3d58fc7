from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = _("Users and sites")

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from accounts.second_factor import remember_enrolment

        user_logged_in.connect(remember_enrolment, dispatch_uid="accounts_remember_enrolment")
