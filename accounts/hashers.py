"""The password hasher: Argon2id at OWASP's recommended minimum, adjustable per deployment.

Django's PBKDF2 default (1,500,000 iterations in Django 6.1) costs about 0.4 s of CPU per
log-in on this project's reference server (2 cores), and Django's Argon2 defaults (100 MiB,
2 passes, 8 lanes) about 0.2 s: twenty nurses logging in at the start of a shift then wait
seconds for each other (bench/load_test.py, BENCHMARKS.md). Argon2id is memory-hard, so a
lower CPU cost does not make guessing cheaper on GPUs in the same way; the OWASP Password
Storage Cheat Sheet's minimum is 19 MiB of memory, 2 passes and 1 lane, which is the default
here. `PASSWORD_ARGON2_MEMORY_KIB`, `PASSWORD_ARGON2_TIME_COST` and
`PASSWORD_ARGON2_PARALLELISM` raise it (settings.py reads them from the environment). Stored
hashes with other parameters, or made by PBKDF2, are still accepted and re-hashed with these
at the next log-in (Django's `must_update`).

Written as a subclass because Django's Argon2PasswordHasher takes its parameters from class
attributes only; the algorithm name stays "argon2", so the stored hashes are Django's own.
"""

from django.conf import settings
from django.contrib.auth.hashers import Argon2PasswordHasher


class RegistryArgon2PasswordHasher(Argon2PasswordHasher):
    @property
    def memory_cost(self) -> int:  # type: ignore[override]
        return int(settings.PASSWORD_ARGON2["memory_cost"])

    @property
    def time_cost(self) -> int:  # type: ignore[override]
        return int(settings.PASSWORD_ARGON2["time_cost"])

    @property
    def parallelism(self) -> int:  # type: ignore[override]
        return int(settings.PASSWORD_ARGON2["parallelism"])
