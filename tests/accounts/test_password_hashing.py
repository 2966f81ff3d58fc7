"""Passwords are stored with Argon2id at OWASP's minimum (19 MiB, 2 passes, 1 lane), and a hash made
before (Django's PBKDF2 default) still logs the nurse in and is replaced by Argon2id on that log-in."""

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher, identify_hasher
from django.test import Client

from registry import settings as project
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def production_hashers(settings):  # (tests/conftest.py stores MD5 hashes to save time; not here)
    settings.PASSWORD_HASHERS = project.PASSWORD_HASHERS


def stored(user):
    user.refresh_from_db()
    return user.password


def test_a_new_password_is_stored_as_argon2id_at_owasps_minimum():
    user = UserFactory(username="newnurse")
    user.set_password("a long enough secret 12")
    user.save()
    # Django's format: argon2$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>
    algorithm, variant, version, parameters, salt, digest = stored(user).split("$")
    assert (algorithm, variant, version, parameters) == ("argon2", "argon2id", "v=19", "m=19456,t=2,p=1")
    assert salt and digest
    assert user.check_password("a long enough secret 12") and not user.check_password("a long enough secret 13")


def test_an_older_pbkdf2_hash_logs_in_and_is_rehashed_with_argon2id():
    user = UserFactory(username="oldnurse")
    user.password = PBKDF2PasswordHasher().encode(PASSWORD, "fixedsalt0123456")
    user.save()
    assert stored(user).startswith("pbkdf2_sha256$")
    response = Client(REMOTE_ADDR="10.9.0.1").post("/accounts/login/", {"username": "oldnurse", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert stored(user).startswith("argon2$argon2id$v=19$m=19456,t=2,p=1$")
    assert identify_hasher(stored(user)).algorithm == "argon2"


def test_the_argon2_parameters_are_the_deployments_to_raise(settings):
    settings.PASSWORD_ARGON2 = {"memory_cost": 65536, "time_cost": 3, "parallelism": 4}
    user = UserFactory(username="strictnurse")
    user.set_password("a long enough secret 12")
    user.save()
    assert "$m=65536,t=3,p=4$" in stored(user)
