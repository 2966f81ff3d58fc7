"""Settings for the sacroplasty registry, driven by environment variables.

DEBUG is off unless DJANGO_DEBUG=True (scripts/run.sh sets it for the local
demo, which then uses a throw-away key). With DEBUG off the app refuses to start
without SECRET_KEY (or SECRET_KEY_FILE); production also sets ALLOWED_HOSTS and
DATABASE_URL (the application's role, see README "Production").
"""

import os
import secrets
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: str) -> bool:
    value = os.environ.get(name, default)
    if value not in ("True", "False", "1", "0", "true", "false"):
        raise ImproperlyConfigured(f"{name} must be True or False, not {value!r}")
    return value in ("True", "1", "true")


def envsecret(name: str) -> str | None:
    """Read NAME, or the file named by NAME_FILE (Docker/Kubernetes secrets)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(name)


DEBUG = envbool("DJANGO_DEBUG", "False")

# Commands that only read the models and migrations: they sign nothing and serve nothing, so they may
# run anywhere (a pre-commit hook, a build step) with a throw-away key made for this process alone.
KEYLESS_COMMANDS = frozenset({"makemigrations", "showmigrations", "sqlmigrate"})

SECRET_KEY = envsecret("SECRET_KEY")
if not SECRET_KEY:
    if DEBUG:
        SECRET_KEY = "insecure-local-development-key-never-use-in-production-0123456789"
    elif Path(sys.argv[0]).name == "manage.py" and len(sys.argv) > 1 and sys.argv[1] in KEYLESS_COMMANDS:
        SECRET_KEY = secrets.token_urlsafe(50)
    else:
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) must be set when DJANGO_DEBUG is False")

ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

INSTALLED_APPS = [
    "registry.apps.RegistryAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "crispy_forms",
    "crispy_bootstrap5",
    "registry.apps.RegistryAxesConfig",  # django-axes, named for people
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "accounts",
    "audit",
    "patients",
    "procedures",
    "outcomes",
    "dashboard",
    "exchange",
    "oversight",
    "django_tasks_db",
    "selfreport",
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "registry.middleware.BadInputMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The browser's language (Accept-Language, or the cookie the header switcher sets) ...
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # ... unless the signed-in user chose one (accounts.User.language).
    "accounts.middleware.UserLanguageMiddleware",
    "registry.middleware.NoStoreMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "accounts.middleware.AccountGateMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "axes.middleware.AxesMiddleware",
    "registry.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "registry.urls"
WSGI_APPLICATION = "registry.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
                "registry.context_processors.registry",
            ],
            # registry/ is not an app (its AppConfig is the admin's), so its filters are named here.
            "libraries": {"measures": "registry.templatetags.measures"},
        },
    },
]

# Persistent connections, checked before each request's first query, so a restarted
# database costs no request (CONN_HEALTH_CHECKS).
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}", conn_max_age=600, conn_health_checks=True
    )
}
# Parallel developers and CI jobs on one PostgreSQL server need distinct test databases.
if os.environ.get("TEST_DATABASE_NAME"):
    DATABASES["default"]["TEST"] = {"NAME": os.environ["TEST_DATABASE_NAME"]}
# A read replica (PostgreSQL streaming replication) for the dashboard, summary, report and
# export reads; every write and every other read stays on the primary (registry/replica.py).
# In a test run the replica is the test database itself (MIRROR): no second test database.
REPORTING_DATABASE = "default"
if os.environ.get("DATABASE_REPLICA_URL"):
    DATABASES["replica"] = {
        **dj_database_url.parse(os.environ["DATABASE_REPLICA_URL"], conn_max_age=600, conn_health_checks=True),
        "TEST": {"MIRROR": "default"},
    }
    REPORTING_DATABASE = "replica"
DATABASE_ROUTERS = ["registry.replica.ReplicaRouter"]
# Behind PgBouncer in transaction mode (README "How the registry grows"): a server-side cursor of
# .iterator() outside a transaction is declared WITH HOLD and would outlive the transaction that
# PgBouncer ties to one server connection; Django then fetches such results whole instead.
if envbool("DATABASE_POOLED", "False"):
    for _database in DATABASES.values():
        _database["DISABLE_SERVER_SIDE_CURSORS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "accounts.backends.RoleBackend",
]
# Log-in throttling (accounts/throttle.py): a username is locked after AXES_FAILURE_LIMIT
# failures from any address, an address after AXES_ADDRESS_FAILURE_LIMIT failures for any
# usernames; a success clears only that account's failures from that address.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "5"))
AXES_ADDRESS_FAILURE_LIMIT = int(os.environ.get("AXES_ADDRESS_FAILURE_LIMIT", "30"))
AXES_COOLOFF_TIME = float(os.environ.get("AXES_COOLOFF_HOURS", "0.5"))  # hours
AXES_RESET_ON_SUCCESS = False
AXES_HANDLER = "accounts.throttle.AccountAndAddressHandler"
AXES_LOCKOUT_CALLABLE = "accounts.throttle.lockout_response"
AXES_CLIENT_IP_CALLABLE = "accounts.throttle.client_ip"
AXES_ENABLE_ADMIN = False  # unlocking goes through the audited admin (audit/admin_accounts.py)
# How many reverse proxies in front of the app append to X-Forwarded-For (0: use REMOTE_ADDR only).
TRUSTED_PROXY_COUNT = int(os.environ.get("TRUSTED_PROXY_COUNT", "0"))
OTP_TOTP_ISSUER = "PSP registry"

# Argon2id first (accounts/hashers.py: OWASP's minimum by default); the others only check hashes
# stored before, which are re-hashed with Argon2id at the next log-in.
PASSWORD_HASHERS = [
    "accounts.hashers.RegistryArgon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
PASSWORD_ARGON2 = {
    "memory_cost": int(os.environ.get("PASSWORD_ARGON2_MEMORY_KIB", "19456")),  # 19 MiB
    "time_cost": int(os.environ.get("PASSWORD_ARGON2_TIME_COST", "2")),
    "parallelism": int(os.environ.get("PASSWORD_ARGON2_PARALLELISM", "1")),
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Sessions end after inactivity: every request pushes the expiry forward.
SESSION_COOKIE_AGE = int(os.environ.get("SESSION_IDLE_SECONDS", str(30 * 60)))
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True

# Two languages (issue 16). A user's stored choice wins (accounts.middleware), then the
# switcher's cookie, then the browser's Accept-Language, then English. Each language is
# named in itself so a reader finds her own in the switcher.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]  # the project templates/, static/js and registry/
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "media"))
MEDIA_URL = "media/"  # never served publicly: consent PDFs go through a permission-checked view
STORAGES = {
    # Uploads are stored under random names (registry/uploads.py), never the name the user gave.
    "default": {"BACKEND": "registry.uploads.RandomNameStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Largest consent PDF or blank consent form accepted (registry/uploads.py).
UPLOAD_MAX_MB = float(os.environ.get("UPLOAD_MAX_MB", "20"))
DATA_UPLOAD_MAX_MEMORY_SIZE = 20 * 1024 * 1024

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"

# Clinical settings (see docs/domain.md in the developer material).
ODI_MIN_SECTIONS = int(os.environ.get("ODI_MIN_SECTIONS", "9"))
WORKLIST_DAYS_AHEAD = int(os.environ.get("WORKLIST_DAYS_AHEAD", "7"))

# Security: everything below is what `check --deploy` asks for once DEBUG is off.
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
if not DEBUG:
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", "True")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", "True")
    # Preloading is hard to undo (browsers ship the list): only when the hospital opts in.
    SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", "False")
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS = ["security.W021"]

# The header a TLS-terminating proxy sets, trusted only when configured: any client can
# send X-Forwarded-Proto. SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto: https" (the value
# defaults to https); the proxy must overwrite the header clients send.
if os.environ.get("SECURE_PROXY_SSL_HEADER"):
    _header, _sep, _value = os.environ["SECURE_PROXY_SSL_HEADER"].partition(":")
    SECURE_PROXY_SSL_HEADER = (
        "HTTP_" + _header.strip().upper().replace("-", "_").removeprefix("HTTP_"),
        _value.strip() or "https",
    )

from django.utils.csp import CSP  # noqa: E402

SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.UNSAFE_INLINE],
    "img-src": [CSP.SELF, "data:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
}

REGISTRY_VERSION = "0.1.0"

# Background work (selfreport): Django's Tasks framework with a database-backed queue;
# `manage.py db_worker` runs it (scripts/run.sh, docker-compose's worker service).
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
# E-mail (Django's mailers): SMTP (EMAIL_HOST, default localhost); the console only in the local
# demo (DEBUG) when no EMAIL_HOST is given.
MAILERS = {
    "default": {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {
            "host": os.environ.get("EMAIL_HOST", "localhost"),
            "port": int(os.environ.get("EMAIL_PORT", "25")),
            "username": os.environ.get("EMAIL_HOST_USER", ""),
            "password": envsecret("EMAIL_HOST_PASSWORD") or "",
            "use_tls": envbool("EMAIL_USE_TLS", "False"),
            "use_ssl": envbool("EMAIL_USE_SSL", "False"),
            "timeout": int(os.environ.get("EMAIL_TIMEOUT", "20")),
        },
    }
    if os.environ.get("EMAIL_HOST") or not DEBUG
    else {"BACKEND": "django.core.mail.backends.console.EmailBackend"}
}
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "registry@localhost")
# The address patients' links and staff's links point to, e.g. https://registry.hospital.org
SITE_URL = os.environ.get("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
# A site's language for patient e-mails and pages: "BJ=zh-hans,PSP=en" (others: SELFREPORT_LANGUAGE).
SELFREPORT_LANGUAGE = os.environ.get("SELFREPORT_LANGUAGE", "en")
SELFREPORT_SITE_LANGUAGES = dict(
    pair.split("=", 1) for pair in os.environ.get("SELFREPORT_SITE_LANGUAGES", "").split(",") if "=" in pair
)
SELFREPORT_REMINDER_DAYS = int(os.environ.get("SELFREPORT_REMINDER_DAYS", "3"))
SELFREPORT_MAX_TOKEN_FAILURES = int(os.environ.get("SELFREPORT_MAX_TOKEN_FAILURES", "20"))  # per address per hour
SELFREPORT_SEND_ATTEMPTS = int(os.environ.get("SELFREPORT_SEND_ATTEMPTS", "5"))
SELFREPORT_RETRY_SECONDS = int(os.environ.get("SELFREPORT_RETRY_SECONDS", "300"))  # doubled after each failure
