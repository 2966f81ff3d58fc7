import os
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in the test thread; the ORM calls a
# browser test makes (factories, assertions) are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

DEMO_BUNDLE = Path(__file__).resolve().parent.parent / "exchange" / "demo" / "paper_cohort"
SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


@pytest.fixture(autouse=True)
def _fast_and_plain(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def confirmed_totp(user):
    """The user's confirmed authenticator (made as enrolment would if she has none yet)."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    return device or TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)


class VerifiedClient:
    """Mixin for the test client: force_login also completes the second factor for users who need it.

    force_login stands for "this user has finished logging in"; for an admin
    that includes the code from her app, so the session is verified with
    django_otp.login against a real confirmed device. Tests of the second step
    itself use a plain django.test.Client.
    """

    def force_login(self, user, backend=None):
        super().force_login(user, backend)
        from django.http import HttpRequest
        from django_otp import login as otp_login

        from accounts.second_factor import needs_verification

        if not needs_verification(user):
            return
        request = HttpRequest()
        request.session = self.session
        request.user = user
        otp_login(request, confirmed_totp(user))
        request.session.save()


@pytest.fixture
def client():
    from django.test import Client

    return type("VerifiedTestClient", (VerifiedClient, Client), {})()


@pytest.fixture(autouse=True)
def _language_reset():
    """A request in Chinese leaves Chinese active in the thread: each test starts and ends in the default language."""
    from django.utils import translation

    translation.deactivate()
    yield
    translation.deactivate()


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"),
        "args": [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    }


@pytest.fixture
def demo_cohort(db):
    """The ten paper cases, imported through the real importer."""
    from exchange.importer import import_bundle

    return import_bundle(DEMO_BUNDLE)


@pytest.fixture
def site(db):
    from tests.factories import SiteFactory

    return SiteFactory(code="PSP")


@pytest.fixture
def other_site(db):
    from tests.factories import SiteFactory

    return SiteFactory(code="ZZ")


def _user(role, site, **kwargs):
    from tests.factories import UserFactory

    user = UserFactory(role=role, **kwargs)
    if site is not None:
        user.sites.add(site)
    return user


@pytest.fixture
def nurse(site):
    return _user("nurse", site, username="nurse")


@pytest.fixture
def investigator(site):
    return _user("investigator", site, username="investigator")


@pytest.fixture
def admin_user(site):
    return _user("admin", site, username="admin", study_wide=True, is_staff=True)


@pytest.fixture
def other_nurse(other_site):
    return _user("nurse", other_site, username="other_nurse")


@pytest.fixture
def monitor(site):
    return _user("monitor", site, username="monitor")
