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
