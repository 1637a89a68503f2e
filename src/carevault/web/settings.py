"""Django settings, read from the environment (see README "Configuration").

Dev/demo mode creates its secrets on first run in the data directory; production mode
(``CAREVAULT_ENV=production``) refuses to start without them. ``DEBUG`` is off unless asked for
explicitly: Django's debug pages show local variables, and local variables hold PHI.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from carevault import config
from carevault.platform.files import atomic_write_bytes

BASE_DIR = Path(__file__).resolve().parent
# Created owner-only (0700), and this process's umask made owner-only (database, -wal/-shm,
# uploads, keys: see config.secure_data_dir).
DATA_DIR = config.secure_data_dir()
PRODUCTION = config.is_production()


def _env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {value!r}")


def _env_int(name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {value!r}") from None
    if number < minimum or (maximum is not None and number > maximum):
        upper = "" if maximum is None else f" and at most {maximum}"
        raise ImproperlyConfigured(f"{name} must be at least {minimum}{upper}, got {number}")
    return number


def _env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name, "").strip()
    return [item.strip() for item in value.split(",") if item.strip()] if value else default


def _secret_key() -> str:
    value = os.environ.get("CAREVAULT_SECRET_KEY", "").strip()
    if value:
        return value
    if PRODUCTION:
        raise ImproperlyConfigured("production mode needs CAREVAULT_SECRET_KEY")
    path = DATA_DIR / "secret_key"
    if not path.exists():
        atomic_write_bytes(path, secrets.token_urlsafe(50).encode())
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = _env_bool("CAREVAULT_DEBUG")
ALLOWED_HOSTS = _env_list("CAREVAULT_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = _env_list("CAREVAULT_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "carevault.web.accounts",
    "carevault.web.login",
    "carevault.web.audit",
    "carevault.web.vault",
    "carevault.web.clinic",
    "carevault.web.labs",
    "carevault.web.diagnosis",
    "carevault.web.officer",
    "carevault.web.securitycore",
    "carevault.web.api",
    "carevault.web.sharedstate",
    "carevault.web.jobs",
    # The task queue (issue 16): Django's Tasks API (the django-tasks backport) and its
    # database backend, whose table is created by `migrate` like every other.
    "django_tasks",
    "django_tasks_db",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "carevault.web.middleware.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before anything reads a parameter: text that is not valid Unicode is a 400 (web/inputs.py).
    "carevault.web.inputs.ValidTextMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "carevault.web.securitycore.middleware.SecurityMiddleware",
    "carevault.web.login.middleware.SessionGuardMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "carevault.web.middleware.KeyringScopeMiddleware",
]

ROOT_URLCONF = "carevault.web.urls"
WSGI_APPLICATION = "carevault.web.wsgi.application"

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
            ],
        },
    },
]

_database_url = os.environ.get("DATABASE_URL", "").strip()
if _database_url:
    DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=60)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "carevault.sqlite3"),
            # IMMEDIATE: a write transaction takes the lock at BEGIN, so two writers of the
            # audit chain queue up instead of failing half-way with "database is locked".
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_redis_url = os.environ.get("REDIS_URL", "").strip()
# Every key this deployment writes starts with this prefix: several deployments (or test runs)
# can share one Redis or one table, and clearing the store deletes only this deployment's keys.
CACHE_PREFIX = os.environ.get("CAREVAULT_CACHE_PREFIX", "").strip() or "carevault"


def _shared_cache(prefix: str) -> dict[str, object]:
    """The security state's store (issue 12): every worker and every app server must see one
    state (throttle counts, blocks, budgets, monitor histories, login challenges), so it is
    Redis when REDIS_URL is set, else a table in the application's database; never per-process
    memory or files (sharedstate/backend.py says why each operation is exact)."""
    if _redis_url:
        return {
            "BACKEND": "carevault.web.sharedstate.redis.SharedRedisCache",
            "LOCATION": _redis_url,
            "KEY_PREFIX": prefix,
        }
    return {"BACKEND": "carevault.web.sharedstate.backend.SharedStateCache", "KEY_PREFIX": prefix}


# --- Background tasks (issue 16: carevault.web.jobs; docs/operations.md "Background jobs") ---
# database (default): tasks wait in a table of the application's database, so a one-machine
# clinic needs nothing else; `carevault serve` starts one worker beside gunicorn. redis: RQ
# queues in REDIS_URL, for several app servers and workers. immediate: run in the process that
# enqueues them, after its commit (tests, and scripts with no worker).
TASKS_MODE = os.environ.get("CAREVAULT_TASKS", "").strip().lower() or "database"
_TASK_BACKENDS = {
    "database": "django_tasks_db.DatabaseBackend",
    # django_tasks_rq's backend, with retries for jobs whose worker died (jobs/rqbackend.py).
    "redis": "carevault.web.jobs.rqbackend.RQBackend",
    "immediate": "django_tasks.backends.immediate.ImmediateBackend",
}
if TASKS_MODE not in _TASK_BACKENDS:
    raise ImproperlyConfigured(
        f"CAREVAULT_TASKS must be one of {', '.join(_TASK_BACKENDS)}, got {TASKS_MODE!r}"
    )
if TASKS_MODE == "redis" and not _redis_url:
    raise ImproperlyConfigured("CAREVAULT_TASKS=redis needs REDIS_URL")
# The queues: "default" (audit sealing, short jobs) and "long" (re-encryption, retraining,
# backups), so a long job never holds up the sealer when two workers (or --queues) split them.
TASK_QUEUES = ["default", "long"]
TASKS = {"default": {"BACKEND": _TASK_BACKENDS[TASKS_MODE], "QUEUES": TASK_QUEUES}}
if TASKS_MODE == "redis":
    INSTALLED_APPS.append("django_rq")
    # RQ's keys carry no deployment prefix: give each deployment its own Redis database
    # (REDIS_URL's /N) when several share one Redis server.
    RQ_QUEUES = {name: {"URL": _redis_url, "DEFAULT_TIMEOUT": 6 * 3600} for name in TASK_QUEUES}
# A worker writes a heartbeat every BEAT seconds; one silent for DEAD_AFTER seconds is dead,
# and the task it was running is handed to the next worker, at most MAX_ATTEMPTS times in all.
TASKS_BEAT_SECONDS = _env_int("CAREVAULT_TASKS_BEAT_SECONDS", 5, minimum=1)
TASKS_DEAD_AFTER_SECONDS = _env_int("CAREVAULT_TASKS_DEAD_AFTER_SECONDS", 60, minimum=2)
TASKS_MAX_ATTEMPTS = _env_int("CAREVAULT_TASKS_MAX_ATTEMPTS", 5, minimum=1)
# Scheduled backups (carevault.backup.tasks): every worker's heartbeat queues one into this
# directory once the last is older than EVERY_HOURS, keeping the newest KEEP. Unset: no schedule
# (cron `carevault backup create` instead).
BACKUP_DIR = os.environ.get("CAREVAULT_BACKUP_DIR", "").strip()
BACKUP_EVERY_HOURS = _env_int("CAREVAULT_BACKUP_EVERY_HOURS", 24, minimum=1)
BACKUP_KEEP = _env_int("CAREVAULT_BACKUP_KEEP", 7, minimum=1)
# --- end of background tasks ---------------------------------------------------------------------

CACHES = {
    "default": _shared_cache(CACHE_PREFIX),
    # Login challenges (login/challenges.py) under a prefix of their own: clearing or
    # flooding them touches nothing else. Each expires by its TTL; consuming one is an atomic
    # delete that only one request can win, whichever worker issued it.
    "login_challenges": _shared_cache(f"{CACHE_PREFIX}-challenges"),
}

AUTH_USER_MODEL = "accounts.User"
# A signed-in user's forged form is audited as a denial (web/access.py).
CSRF_FAILURE_VIEW = "carevault.web.access.csrf_failure"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Cookies: HttpOnly everywhere (htmx reads the CSRF token from a meta tag, not the cookie),
# Secure whenever the site is served over HTTPS (production), short sessions (HIPAA logoff).
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = 8 * 3600
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
_https = _env_bool("CAREVAULT_HTTPS", default=PRODUCTION)
SESSION_COOKIE_SECURE = _https
CSRF_COOKIE_SECURE = _https
SECURE_SSL_REDIRECT = _https and _env_bool("CAREVAULT_SSL_REDIRECT", default=True)
SECURE_HSTS_SECONDS = 31536000 if _https else 0
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Uploads stay in memory (never in a plaintext temporary file on disk) until they are streamed
# into encrypted storage; the lab upload limit is enforced before that.
LAB_UPLOAD_MAX_BYTES = int(os.environ.get("CAREVAULT_UPLOAD_MAX_BYTES", str(10 * 1024 * 1024)))
FILE_UPLOAD_HANDLERS = ["django.core.files.uploadhandler.MemoryFileUploadHandler"]
FILE_UPLOAD_MAX_MEMORY_SIZE = LAB_UPLOAD_MAX_BYTES + 1
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
UPLOAD_DIR = DATA_DIR / "uploads"
# Where the audit chain's signed checkpoints and their key live (carevault.web.audit.anchor):
# the data directory; tests point it at a directory of their own.
AUDIT_ANCHOR_DIR = DATA_DIR
# The audit sealer (carevault.web.audit.sealing): after a commit that appended, a process looks
# at the unsealed backlog at most every CHECK seconds, and seals when more than EVERY entries
# wait or the oldest has waited AFTER seconds (docs/architecture.md, "The audit log").
AUDIT_SEAL_EVERY = _env_int("CAREVAULT_AUDIT_SEAL_EVERY", 100, minimum=1)
AUDIT_SEAL_AFTER_SECONDS = _env_int("CAREVAULT_AUDIT_SEAL_AFTER_SECONDS", 60)
AUDIT_SEAL_CHECK_SECONDS = _env_int("CAREVAULT_AUDIT_SEAL_CHECK_SECONDS", 5)
# JSON bodies (web/inputs.py parse_json): larger ones are refused (413) before they are parsed.
JSON_MAX_BODY_BYTES = _env_int("CAREVAULT_JSON_MAX_BODY_BYTES", 1_000_000, minimum=1024)
# Self-registrations per client address and hour (clinic/registration.py); 0 turns them off.
REGISTRATIONS_PER_HOUR = _env_int("CAREVAULT_REGISTRATIONS_PER_HOUR", 20)

# Login hardening (issue 4).
TRUSTED_PROXIES = _env_int("CAREVAULT_TRUSTED_PROXIES", 0, maximum=10)
# Behind a TLS-terminating proxy the app itself speaks plain HTTP: trust the proxy's
# X-Forwarded-Proto so that request.is_secure() holds for HTTPS clients and SECURE_SSL_REDIRECT
# does not send them round in a loop. Only when proxies are declared: without one, a client could
# send the header itself. The proxy must overwrite it (docs/deployment.md).
if TRUSTED_PROXIES > 0:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Login protection (login/throttle.py; docs/operations.md "Login protection").
# Per account (by normalised name, existing or not): failures up to BACKOFF_AFTER are free, then
# every further attempt waits 2^(n - BACKOFF_AFTER) seconds, up to BACKOFF_MAX; the count is
# forgotten after ACCOUNT_RESET seconds without a failure, and on a successful login.
LOGIN_BACKOFF_AFTER = _env_int("CAREVAULT_LOGIN_BACKOFF_AFTER", 5, minimum=1)
LOGIN_BACKOFF_MAX_SECONDS = _env_int("CAREVAULT_LOGIN_BACKOFF_MAX_SECONDS", 900, minimum=1)
LOGIN_ACCOUNT_RESET_SECONDS = _env_int("CAREVAULT_LOGIN_ACCOUNT_RESET_SECONDS", 3600, minimum=60)
# An existing account is suspended after this many consecutive failures (kept in the database).
# NIST SP 800-63B allows at most 100; 20 leaves an online guesser almost nothing.
LOGIN_SUSPEND_AFTER = _env_int("CAREVAULT_LOGIN_SUSPEND_AFTER", 20, minimum=1, maximum=100)
# Per client address, over a sliding window: an address is blocked only on evidence of an attack
# from it (issue 12), with limits a busy ward never reaches: many staff behind one workstation
# or NAT mistype all day, so mistakes act on the account (back-off, suspension) instead.
# Failures across this many account names, or this many failures, in the window:
LOGIN_ADDRESS_WINDOW_SECONDS = _env_int("CAREVAULT_LOGIN_ADDRESS_WINDOW_SECONDS", 900, minimum=60)
LOGIN_ADDRESS_MAX_FAILURES = _env_int("CAREVAULT_LOGIN_ADDRESS_MAX_FAILURES", 300, minimum=1)
LOGIN_ADDRESS_MAX_USERNAMES = _env_int("CAREVAULT_LOGIN_ADDRESS_MAX_USERNAMES", 100, minimum=1)
# Failures for names that do not exist, per minute: faster than any person types.
LOGIN_ADDRESS_UNKNOWN_PER_MINUTE = _env_int(
    "CAREVAULT_LOGIN_ADDRESS_UNKNOWN_PER_MINUTE", 20, minimum=1
)
# Replayed, forged, tampered or malformed login packets in the window (an expired one is an
# old browser tab, not evidence).
LOGIN_ADDRESS_MAX_FORGED_PACKETS = _env_int(
    "CAREVAULT_LOGIN_ADDRESS_MAX_FORGED_PACKETS", 20, minimum=1
)
LOGIN_ADDRESS_BLOCK_SECONDS = _env_int("CAREVAULT_LOGIN_ADDRESS_BLOCK_SECONDS", 900, minimum=1)
# Login challenges one client address may fetch per minute (the shared store keeps one counter
# for every worker): a flood of challenge requests is answered 429 instead of filling the store.
LOGIN_CHALLENGES_PER_MINUTE = _env_int("CAREVAULT_LOGIN_CHALLENGES_PER_MINUTE", 60, minimum=1)
# "Unblock" and "Lift" mark the evidence behind a response as handled for this long, so the same
# evidence does not fire the same response again (web/login/handled.py).
SECURITY_HANDLED_HOURS = _env_int("CAREVAULT_SECURITY_HANDLED_HOURS", 24, minimum=1)
BREAK_GLASS_MINUTES = int(os.environ.get("CAREVAULT_BREAK_GLASS_MINUTES", "60"))

# --- Sessions, second factor and account recovery (issue 4: login/sessions.py, twofactor.py,
# recovery.py, outbox.py) --------------------------------------------------------------------------
# HIPAA automatic logoff: a session ends after this long without a request, and in any case this
# long after its login.
SESSION_IDLE_MINUTES = _env_int("CAREVAULT_IDLE_MINUTES", 15, minimum=1)
SESSION_ABSOLUTE_HOURS = _env_int("CAREVAULT_SESSION_HOURS", 8, minimum=1, maximum=24)
# require_recent_second_factor: how recent a second factor sensitive views ask for.
STEP_UP_MAX_AGE_MINUTES = _env_int("CAREVAULT_STEP_UP_MAX_AGE_MINUTES", 15, minimum=1)
# Password-reset links are single-use and expire after 30 minutes; the reset form answers no
# faster than this, whether or not it sent anything (message delivery time stays hidden).
PASSWORD_RESET_TIMEOUT = 30 * 60
PASSWORD_RESET_MIN_SECONDS = _env_int("CAREVAULT_PASSWORD_RESET_MIN_MS", 500, minimum=0) / 1000
# The address reset links point to (e.g. https://records.example-clinic.org); when empty, the
# request's host (checked against ALLOWED_HOSTS).
SITE_URL = os.environ.get("CAREVAULT_SITE_URL", "").strip().rstrip("/")
# E-mail: SMTP when CAREVAULT_EMAIL_HOST is set; otherwise an encrypted outbox in the data
# directory (development, demos, tests: accounts/outbox.py), never plaintext files.
DEFAULT_FROM_EMAIL = os.environ.get("CAREVAULT_EMAIL_FROM", "CareVault <no-reply@localhost>")
EMAIL_OUTBOX_DIR = DATA_DIR / "outbox"
_email_host = os.environ.get("CAREVAULT_EMAIL_HOST", "").strip()
if _email_host:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = _email_host
    EMAIL_PORT = _env_int("CAREVAULT_EMAIL_PORT", 587, minimum=1, maximum=65535)
    EMAIL_HOST_USER = os.environ.get("CAREVAULT_EMAIL_USER", "")
    EMAIL_HOST_PASSWORD = os.environ.get("CAREVAULT_EMAIL_PASSWORD", "")
    EMAIL_USE_TLS = _env_bool("CAREVAULT_EMAIL_USE_TLS", default=True)
    EMAIL_USE_SSL = _env_bool("CAREVAULT_EMAIL_USE_SSL")
    EMAIL_TIMEOUT = 10
else:
    EMAIL_BACKEND = "carevault.web.accounts.outbox.EncryptedOutboxBackend"
# --- end of sessions, second factor and account recovery -------------------------------------

# --- AI threat detection and automated response (issue 5: carevault.security,
# web/securitycore) --------------------------------------------------------------------------------
# Every audited action becomes a security event, scored by the trained ensemble when a sealed
# model is in the data directory (`carevault security train`), else by the rules-based baseline.
SECURITY_EVENTS = _env_bool("CAREVAULT_SECURITY_EVENTS", default=True)


def _env_thresholds(name: str, default: str) -> tuple[float, float, float, float]:
    from carevault.security.response import Thresholds

    try:
        return Thresholds.parse(os.environ.get(name, "").strip() or default).as_tuple()
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None


# The lowest risk of each response level: step-up, contain (end the session, block the
# address), suspend (account + all its sessions), rotate (patients' keys + encryption floor).
SECURITY_RESPONSE_THRESHOLDS = _env_thresholds("CAREVAULT_SECURITY_THRESHOLDS", "0.5,0.7,0.85,0.95")
# An event at or above this risk opens (or joins) an incident; None: the step-up threshold.
SECURITY_INCIDENT_THRESHOLD: float | None = None
# An incident with no new event for this long is no longer joined by new ones.
SECURITY_INCIDENT_IDLE_MINUTES = _env_int("CAREVAULT_SECURITY_INCIDENT_IDLE_MINUTES", 60, minimum=1)
# The suite the encryption floor is raised to at the highest level, and for how long.
SECURITY_FLOOR_SUITE = os.environ.get("CAREVAULT_SECURITY_FLOOR_SUITE", "AES-256-GCM").strip()
SECURITY_FLOOR_HOURS = _env_int("CAREVAULT_SECURITY_FLOOR_HOURS", 24, minimum=1)
# Baseline scorer limits beyond the login throttle's own (which it reuses): access denials per
# account (privilege probing) and distinct patients' records opened (scraping) per window.
SECURITY_PROBE_DENIALS = _env_int("CAREVAULT_SECURITY_PROBE_DENIALS", 10, minimum=1)
SECURITY_SCRAPING_PATIENTS = _env_int("CAREVAULT_SECURITY_SCRAPING_PATIENTS", 25, minimum=1)
# Above this p95 scoring time, events that need no immediate answer are scored in batches.
SECURITY_SYNC_BUDGET_MS = _env_int("CAREVAULT_SECURITY_SYNC_BUDGET_MS", 5, minimum=1)
# "worker" (the default): kinds that gate no attacker are stored after commit and scored by
# `carevault worker` (serve starts one beside gunicorn); "background": by a thread of each
# serving process (bounded queue; securitycore/scorer.py); "inline": on the request.
SECURITY_SCORING = os.environ.get("CAREVAULT_SECURITY_SCORING", "").strip() or "worker"
SECURITY_SCORING_QUEUE = _env_int("CAREVAULT_SECURITY_SCORING_QUEUE", 1000, minimum=1)
# Host telemetry (CPU, memory, network, latency) every this many seconds; 0 turns it off.
SECURITY_TELEMETRY_SECONDS = _env_int("CAREVAULT_SECURITY_TELEMETRY_SECONDS", 60, minimum=0)
# How often each process looks for a newer sealed risk model (one directory listing).
SECURITY_MODEL_CHECK_SECONDS = _env_int("CAREVAULT_SECURITY_MODEL_CHECK_SECONDS", 30, minimum=0)
# When the floor rises, stored data below it is re-encrypted by a background task (the task
# queue's worker; a dead worker's task is handed to the next one). 0: only by
# `carevault keys reencrypt`.
REENCRYPT_IN_BACKGROUND = _env_bool("CAREVAULT_REENCRYPT_IN_BACKGROUND", default=True)
# Records per batch (one transaction, one checkpoint): a killed worker redoes at most one batch.
REENCRYPT_BATCH = _env_int("CAREVAULT_REENCRYPT_BATCH", 100, minimum=1)
# --- end of threat detection and response ----------------------------------------------------

# Homomorphic diagnosis (issue 7): encrypted patients one doctor may have scored, per hour and
# per day (the server cannot see the queries, so the budget is the extraction defence).
HE_PATIENTS_PER_HOUR = _env_int("CAREVAULT_HE_PATIENTS_PER_HOUR", 500, minimum=1)
HE_PATIENTS_PER_DAY = _env_int("CAREVAULT_HE_PATIENTS_PER_DAY", 5000, minimum=1)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
# WhiteNoise expects the collected-static directory to exist, even when it serves from finders.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the package in development, so `make run` needs no collectstatic.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {"django": {"handlers": ["console"], "level": "WARNING", "propagate": False}},
}
