"""gunicorn's settings for the registry (read from the working directory: `gunicorn registry.wsgi`).

Sync workers, one request at a time each: a request is a few queries and a template,
and the reverse proxy in front (deploy/nginx.conf) buffers slow clients, so a worker is
never held by a slow network. The export streams for as long as the download takes, hence
the long timeout. WEB_CONCURRENCY sets the number of workers (default: 2 per core + 1);
each holds one persistent database connection (CONN_MAX_AGE), so workers x app servers
must stay under PostgreSQL's max_connections, or go through PgBouncer (README "How the
registry grows").
"""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "300"))
graceful_timeout = 30
# Load the application (every view, registry/wsgi.py) in the master before forking: a new or recycled
# worker serves at once instead of its first user waiting seconds for the imports, and the workers share
# those pages of memory. The master opens no database connection (Django connects on a request).
preload_app = True
# Recycle a worker now and then (jitter: not all at once), so no slow leak can grow for weeks.
max_requests = 2000
max_requests_jitter = 200
# The proxy's address may set X-Forwarded-*; Django trusts them only as settings say
# (SECURE_PROXY_SSL_HEADER, TRUSTED_PROXY_COUNT).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = "-"
