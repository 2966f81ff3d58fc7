from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _


class Site(models.Model):
    """A hospital that enrols patients; its code prefixes its study IDs."""

    code = models.CharField(
        _("code"),
        max_length=10,
        unique=True,
        validators=[RegexValidator(r"^[A-Z0-9]+$", _("Use upper case letters and digits only, e.g. BJ."))],
        help_text=_("Short code, upper case letters and digits, e.g. BJ; prefixes the site's study IDs"),
    )
    name = models.CharField(_("name"), max_length=200)

    class Meta:
        verbose_name = _("site")
        verbose_name_plural = _("sites")
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(condition=models.Q(code__regex=r"^[A-Z0-9]+$"), name="site_code_upper_alnum"),
        ]

    def __str__(self) -> str:
        return f"{self.code} – {self.name}"


class User(AbstractUser):
    """A registry user: one role, scoped to the sites they belong to."""

    class Role(models.TextChoices):
        NURSE = "nurse", _("Research nurse")
        INVESTIGATOR = "investigator", _("Investigator")
        ADMIN = "admin", _("Administrator")
        MONITOR = "monitor", _("Monitor / data manager")

    role = models.CharField(_("role"), max_length=20, choices=Role.choices, default=Role.NURSE)
    sites = models.ManyToManyField(Site, blank=True, related_name="users", verbose_name=_("sites"))
    study_wide = models.BooleanField(
        _("study-wide"), default=False, help_text=_("Sees every site (administrators only; superusers always do).")
    )
    must_change_password = models.BooleanField(
        _("must change password"),
        default=False,
        help_text=_("Set when an administrator chose this user's password; cleared when the user changes it."),
    )
    # Blank: follow the browser (Accept-Language or the switcher's cookie); set from the header switcher.
    language = models.CharField(
        _("language"),
        max_length=10,
        blank=True,
        choices=settings.LANGUAGES,
        help_text=_("Blank: the language of the user's browser."),
    )

    @property
    def is_nurse(self) -> bool:
        return self.role == self.Role.NURSE

    @property
    def is_investigator(self) -> bool:
        return self.role == self.Role.INVESTIGATOR

    @property
    def is_monitor(self) -> bool:
        return self.role == self.Role.MONITOR

    @property
    def is_registry_admin(self) -> bool:
        return self.role == self.Role.ADMIN or self.is_superuser

    @property
    def sees_all_sites(self) -> bool:
        return self.is_superuser or (self.role == self.Role.ADMIN and self.study_wide)

    @property
    def requires_second_factor(self) -> bool:
        """Admins, superusers and anyone with the Django admin's staff flag log in with a second factor."""
        return self.is_superuser or self.is_staff or self.role == self.Role.ADMIN

    @property
    def can_see_identifiers(self) -> bool:
        """Nurses, monitors (who verify against source) and admins work with names and MRNs;
        investigators never see them."""
        return self.is_superuser or self.role in (self.Role.NURSE, self.Role.MONITOR, self.Role.ADMIN)

    @property
    def can_enter_data(self) -> bool:
        return self.is_superuser or self.role in (self.Role.NURSE, self.Role.ADMIN)
