"""Settings for the test suite: the project's settings, imported as a local run would.

registry/settings.py keeps DEBUG off and refuses to start without a secret
unless DJANGO_DEBUG=True. The suite imports it in local mode, as it always
has. pytest-django then turns DEBUG off for every test, and
tests/test_project.py checks the production defaults in subprocesses that use
registry.settings with a clean environment.
"""

import os

os.environ.setdefault("DJANGO_DEBUG", "True")

from registry.settings import *  # noqa: F403

# A second alias on the test database itself (MIRROR), so the tests can see which alias each
# page's queries use (tests/registry/test_replica.py). The reporting reads stay on "default" unless
# a test points REPORTING_DATABASE at "replica": a test inside a transaction on "default" would
# read nothing from a second connection.
DATABASES["replica"] = {**DATABASES["default"], "TEST": {"MIRROR": "default"}}  # noqa: F405
REPORTING_DATABASE = "default"
