import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "registry.settings")
application = get_wsgi_application()
# Import every view now (the statistics, the PDF report, the export formats: about 2.5 s), not in a
# user's first request. With gunicorn's preload_app (gunicorn.conf.py) this happens once, in the master,
# before the workers are forked; it makes no database query.
get_resolver().url_patterns  # noqa: B018
