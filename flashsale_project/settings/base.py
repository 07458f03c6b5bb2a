"""Settings shared by every environment, read from the environment with production-safe defaults.

The README's configuration table lists every variable read here.
"""

from pathlib import Path

import dj_database_url

from .environment import env_bool, env_float, env_int, env_list, env_str, redis_db_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent

SECRET_KEY = env_str("SECRET_KEY", "")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "channels",
    "django_prometheus",
    "accounts",
    "sales",
    "orders",
    "antibot",
    "naive_shop",  # The benchmark's baselines; URLs only with FLASHSALE_BENCH_ENDPOINTS.
]

MIDDLEWARE = [
    # /metrics is answered first, before host validation (see flashsale_project/metrics_view.py).
    "flashsale_project.metrics_view.MetricsEndpointMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "flashsale_project.urls"
WSGI_APPLICATION = "flashsale_project.wsgi.application"
ASGI_APPLICATION = "flashsale_project.asgi.application"

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

# --- PostgreSQL: the source of truth for orders -------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/flashsale")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
        # Django's PostgreSQL backend plus query, error and connection counters (README,
        # "Observability"); it only counts the queries that run, so SQL-free paths stay so.
        engine="django_prometheus.db.backends.postgresql",
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: the source of truth for stock during a sale -----------------------------------
# One server, three logical databases: inventory (db 0, the sale keys of the design), the
# Celery broker (db 1) and Django's cache and sessions (db 2). Each can point elsewhere.
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", redis_db_url(REDIS_URL, 1))
CACHE_URL = env_str("CACHE_URL", redis_db_url(REDIS_URL, 2))
REDIS_SOCKET_TIMEOUT = env_float("REDIS_SOCKET_TIMEOUT", 1.0)
REDIS_MAX_CONNECTIONS = env_int("REDIS_MAX_CONNECTIONS", 200)

CACHES = {
    "default": {
        # django-redis with hit / miss / failure counters on get (django-prometheus).
        "BACKEND": "django_prometheus.cache.backends.redis.RedisCache",
        "LOCATION": CACHE_URL,
        "KEY_PREFIX": "flashsale",
        "OPTIONS": {
            "SOCKET_CONNECT_TIMEOUT": REDIS_SOCKET_TIMEOUT,
            "SOCKET_TIMEOUT": REDIS_SOCKET_TIMEOUT,
        },
    }
}
SESSION_ENGINE = "django.contrib.sessions.backends.cache"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # The storefront's module script sends it as X-CSRFToken.

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [CACHE_URL]},
    }
}

# --- Celery -------------------------------------------------------------------------------
CELERY_TIMEZONE = "UTC"
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A task acknowledged late whose worker dies goes back to the queue instead of vanishing.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 300}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Workers log through LOGGING below, like every other process.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Auth and API -------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "storefront-home"
LOGOUT_REDIRECT_URL = "storefront-home"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "flashsale_project.api_errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Flash sale API",
    "DESCRIPTION": "Sales, purchases and orders. Every error body is {status, detail}.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}
# Request bodies on this API are tiny; anything large is refused before it is read.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 64 * 1024)

# --- Email --------------------------------------------------------------------------------
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(BASE_DIR / ".run" / "mail"))
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Flash Sale <orders@flashsale.localhost>")

# --- Static files and i18n ----------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Django logs every 4xx answer as a warning; in a stampede that is a log line per
        # "sold out". Server errors are still logged.
        "django.request": {"level": "ERROR"},
        # A line per task received and succeeded, every beat tick: the services log what
        # matters (orders moved, repairs, invariant breaks) themselves.
        "celery.app.trace": {"level": "WARNING"},
        "celery.worker.strategy": {"level": "WARNING"},
    },
}

# --- The sale -----------------------------------------------------------------------------
# Sales starting within this many seconds are loaded into Redis by beat.
FLASHSALE_WARM_LEAD_SECONDS = env_int("FLASHSALE_WARM_LEAD_SECONDS", 30 * 60)
# Beat's drain, claim and reconcile tick while a sale is live or has a backlog.
FLASHSALE_RECONCILE_INTERVAL_SECONDS = env_float("FLASHSALE_RECONCILE_INTERVAL_SECONDS", 5.0)
# A stream entry delivered to a worker and not acknowledged for this long is reclaimed.
FLASHSALE_CLAIM_IDLE_MS = env_int("FLASHSALE_CLAIM_IDLE_MS", 30_000)
# Seconds a winner has to pay before the order expires and its unit goes back on sale;
# 0 (the default, no payment step is wired in) keeps orders pending until paid or cancelled.
FLASHSALE_PAYMENT_WINDOW_SECONDS = env_int("FLASHSALE_PAYMENT_WINDOW_SECONDS", 0)
# A win kicks a drain task at most once per this many milliseconds per sale; a drain that
# ends inside the window runs once more when it closes (no win waits for beat).
FLASHSALE_DRAIN_KICK_MS = env_int("FLASHSALE_DRAIN_KICK_MS", 250)
# Stream entries a worker turns into orders per transaction.
FLASHSALE_DRAIN_BATCH_SIZE = env_int("FLASHSALE_DRAIN_BATCH_SIZE", 500)
# Sales stay watched (reconciled, listed as active) this long after they end.
FLASHSALE_WATCH_AFTER_END_SECONDS = env_int("FLASHSALE_WATCH_AFTER_END_SECONDS", 24 * 3600)
CELERY_BEAT_SCHEDULE = {
    # A tick nobody ran before the next one is worthless, hence the expiry.
    "warm-upcoming-sales": {
        "task": "sales.tasks.warm_upcoming_sales",
        "schedule": 30.0,
        "options": {"expires": 30.0},
    },
    "expire-unpaid-orders": {
        "task": "orders.tasks.expire_unpaid_orders",
        "schedule": 30.0,
        "options": {"expires": 30.0},
    },
    "reconcile-sales": {
        "task": "orders.tasks.reconcile_sales",
        "schedule": FLASHSALE_RECONCILE_INTERVAL_SECONDS,
        "options": {"expires": FLASHSALE_RECONCILE_INTERVAL_SECONDS},
    },
}
# `make bench` only: mount /bench/control/ and the naive shop under /bench/ (404 otherwise).
FLASHSALE_BENCH_ENDPOINTS = env_bool("FLASHSALE_BENCH_ENDPOINTS", False)
# Where the storefront opens its WebSocket; empty means the page's own host.
FLASHSALE_WS_URL = env_str("FLASHSALE_WS_URL", "")

# --- Anti-bot (README: "The knobs") ---------------------------------------------------------
# The header a trusted proxy sets to the client's address ("X-Real-IP", "X-Forwarded-For");
# empty: the TCP peer (REMOTE_ADDR). Never set it without such a proxy in front.
ANTIBOT_CLIENT_IP_HEADER = env_str("ANTIBOT_CLIENT_IP_HEADER", "")
# With X-Forwarded-For: how many proxies of ours append to it (the client is that many from the right).
ANTIBOT_TRUSTED_PROXY_COUNT = env_int("ANTIBOT_TRUSTED_PROXY_COUNT", 1)
# Calls (challenges and purchases together) one user / one IP may make on a sale per window;
# 0 turns a limit off. The IP limit is loose: offices and mobile carriers share addresses.
ANTIBOT_USER_LIMIT = env_int("ANTIBOT_USER_LIMIT", 10)
ANTIBOT_IP_LIMIT = env_int("ANTIBOT_IP_LIMIT", 200)
ANTIBOT_RATE_WINDOW_SECONDS = env_int("ANTIBOT_RATE_WINDOW_SECONDS", 1)
# Proof of work: a challenge lives this long; adaptive difficulty adds a bit per doubling of
# the sale's challenge rate above the base rate, up to the ceiling.
ANTIBOT_CHALLENGE_TTL_SECONDS = env_int("ANTIBOT_CHALLENGE_TTL_SECONDS", 60)
ANTIBOT_POW_BASE_RATE = env_int("ANTIBOT_POW_BASE_RATE", 200)
ANTIBOT_POW_MAX_DIFFICULTY = env_int("ANTIBOT_POW_MAX_DIFFICULTY", 22)
ANTIBOT_CHALLENGE_SECRET = env_str("ANTIBOT_CHALLENGE_SECRET", "")
# Idempotency-Key: answers are kept a day (the IETF draft's suggestion); a request that
# died mid-way holds its key at most this many seconds.
ANTIBOT_IDEMPOTENCY_TTL_SECONDS = env_int("ANTIBOT_IDEMPOTENCY_TTL_SECONDS", 24 * 3600)
ANTIBOT_IDEMPOTENCY_IN_FLIGHT_SECONDS = env_int("ANTIBOT_IDEMPOTENCY_IN_FLIGHT_SECONDS", 10)

# --- Metrics (README: "Observability") ------------------------------------------------------
# /metrics answers loopback always, these networks (CIDRs), and a request carrying
# "Authorization: Bearer <METRICS_BEARER_TOKEN>" when a token is set; anyone else gets 403.
METRICS_ALLOWED_NETWORKS = env_list("METRICS_ALLOWED_NETWORKS", [])
METRICS_BEARER_TOKEN = env_str("METRICS_BEARER_TOKEN", "")
# A scrape pings the Celery workers and waits this long for answers (flash_sale_celery_workers);
# 0 leaves the metric out.
METRICS_CELERY_PING_SECONDS = env_float("METRICS_CELERY_PING_SECONDS", 0.5)
# Read the stack-wide metrics (sales from Redis and PostgreSQL, Celery workers) on each scrape.
# Off where another scraped process already reports them (compose's ws containers).
METRICS_STACK_COLLECTOR = env_bool("METRICS_STACK_COLLECTOR", True)
# django-prometheus's per-request HTTP metrics: off by default, they cost every request on the
# hot path (measured in the README); the sale's own purchase metrics are always on.
METRICS_HTTP_MIDDLEWARE = env_bool("METRICS_HTTP_MIDDLEWARE", False)
if METRICS_HTTP_MIDDLEWARE:
    MIDDLEWARE = [
        "django_prometheus.middleware.PrometheusBeforeMiddleware",
        *MIDDLEWARE,
        "django_prometheus.middleware.PrometheusAfterMiddleware",
    ]

# --- Storefront WebSockets, the ws process (docs/websockets.md) -----------------------------
# Sockets one ws process takes; 0: as many as its open-file limit allows (the process raises
# its soft limit to the hard limit at start and logs the number). Past it, a socket is closed
# with 1013 (try again later), as is one more from an address already holding
# WS_MAX_CONNECTIONS_PER_IP (0: no per-address cap; the address is the TCP peer's, so behind a
# proxy set 0 and cap at the proxy).
WS_MAX_CONNECTIONS = env_int("WS_MAX_CONNECTIONS", 0)
WS_MAX_CONNECTIONS_PER_IP = env_int("WS_MAX_CONNECTIONS_PER_IP", 64)
# A socket whose client stops reading: the kernel keeps at most this much unsent for it, the
# process at most this much more; beyond that, or when its bytes wait longer than
# WS_SEND_TIMEOUT_SECONDS, the socket is cut off.
WS_SEND_BUFFER_BYTES = env_int("WS_SEND_BUFFER_BYTES", 32768)
WS_SEND_TIMEOUT_SECONDS = env_float("WS_SEND_TIMEOUT_SECONDS", 10.0)
