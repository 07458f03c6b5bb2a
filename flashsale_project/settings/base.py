"""Settings shared by every environment, read from the environment with production-safe defaults.

docs/configuration.md lists every variable read here (a test holds the two together).
"""

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from core.logs import log_level_valid, logging_config

from .environment import env, redis_db_url, seconds_list

BASE_DIR = Path(__file__).resolve().parent.parent.parent

SECRET_KEY = env.str("SECRET_KEY", default="")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "django_prometheus",
    # Foundation below (core/, not an app), domain apps, then the adapters on top.
    "antibot",
    "accounts",
    "sales",
    "orders",
    "salelog",
    "storefront",
    "operations",
    "tcpdoor",
]

MIDDLEWARE = [
    # /metrics is answered first, before host validation (see observability/views.py).
    "observability.views.MetricsEndpointMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A view's uncaught exception in the contract's terms (503 for Redis or PostgreSQL away).
    "core.errors.ContractErrorsMiddleware",
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
DATABASES = {
    "default": {
        **env.db_url(
            "DATABASE_URL",
            default="postgresql://postgres@127.0.0.1:5432/flashsale",
            # Django's PostgreSQL backend plus query, error and connection counters
            # (docs/observability.md); it only counts the queries that run, so SQL-free
            # paths stay so.
            engine="django_prometheus.db.backends.postgresql",
        ),
        "CONN_MAX_AGE": env.int("DATABASE_CONN_MAX_AGE", default=60),
        "CONN_HEALTH_CHECKS": True,
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: the source of truth for stock during a sale -----------------------------------
# One server, three logical databases: inventory (db 0, the sale keys of the design), the
# Celery broker (db 1) and Django's cache and sessions (db 2). Each can point elsewhere.
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=redis_db_url(REDIS_URL, 1))
CACHE_URL = env.str("CACHE_URL", default=redis_db_url(REDIS_URL, 2))
# Sale data (stock, buyers, order streams, scripts, the events) on a Redis Cluster instead:
# its nodes' URLs, comma-separated (docs/scale-out.md). The broker, the cache and Channels
# stay on REDIS_URL's server (their URLs above).
REDIS_CLUSTER_URLS = env.list("REDIS_CLUSTER_URLS", default=[])
REDIS_SOCKET_TIMEOUT = env.float("REDIS_SOCKET_TIMEOUT", default=1.0)
REDIS_MAX_CONNECTIONS = env.int("REDIS_MAX_CONNECTIONS", default=200)

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
        "accounts.authentication.AccessTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.strict_json.StrictJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "core.openapi.ContractAutoSchema",
    "EXCEPTION_HANDLER": "core.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Flash sale API",
    "DESCRIPTION": "Sales, purchases and orders. Every error body is {status, detail}.",
    "VERSION": "0.2.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}
# Access tokens (docs/accounts.md): signed here, verified in process by every web process.
# ACCESS_TOKEN_KEYS is "<key id>:<secret>,..." (the first signs, all verify; dropping one
# refuses its tokens); empty: one key derived from SECRET_KEY.
ACCESS_TOKEN_KEYS = env.list("ACCESS_TOKEN_KEYS", default=[])
ACCESS_TOKEN_LIFETIME_SECONDS = env.int("ACCESS_TOKEN_LIFETIME_SECONDS", default=3600)
# Throttles (docs/accounts.md, "Throttles"): "<count>/<period>" (30/min, 10/15min, 20/hour),
# or "off". Counted in Redis, so every web process shares one count. Password checks from
# one address (refused past it); failed logins against one username from one address, and
# from all of them (answered LOGIN_SLOW_SECONDS later past either, never refused); sign-ups
# from one address and at one username. An address can be a whole office or a carrier's NAT:
# the per-IP rates are loose.
LOGIN_THROTTLE_IP = env.str("LOGIN_THROTTLE_IP", default="60/min")
LOGIN_THROTTLE_ACCOUNT = env.str("LOGIN_THROTTLE_ACCOUNT", default="10/15min")
LOGIN_THROTTLE_ACCOUNT_ANY = env.str("LOGIN_THROTTLE_ACCOUNT_ANY", default="50/15min")
LOGIN_SLOW_SECONDS = env.float("LOGIN_SLOW_SECONDS", default=2.0)
REGISTER_THROTTLE_IP = env.str("REGISTER_THROTTLE_IP", default="20/hour")
REGISTER_THROTTLE_ACCOUNT = env.str("REGISTER_THROTTLE_ACCOUNT", default="5/hour")
# Request bodies on this API are tiny; anything large is refused before it is read.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=64 * 1024)

# --- The web server's requests (docs/design.md, "Slow clients and bodies") ----------------
# Bodies one address may be sending to one web process at once; one more, while one of them
# has been arriving a while, is answered 429 before a byte of it is read (0: no limit). A slow
# body holds its thread until it arrives (granian has no body timeout): this bounds how many
# threads one address can hold.
WEB_BODIES_PER_IP = env.int("WEB_BODIES_PER_IP", default=4)
# Connections one address may hold open on one web process (core/connection_cap.py): the
# ones past it are closed within WEB_CONNECTION_SWEEP_SECONDS, whatever they send (0: no cap).
# Peers in TRUSTED_PROXY_NETWORKS (the balancer, which caps addresses itself) are not counted.
WEB_MAX_CONNECTIONS_PER_IP = env.int("WEB_MAX_CONNECTIONS_PER_IP", default=256)
WEB_CONNECTION_SWEEP_SECONDS = env.float("WEB_CONNECTION_SWEEP_SECONDS", default=0.5)
# A body that arrives whole but later than this after its headers is answered 408 and changes
# nothing (granian's WEB_HEADER_TIMEOUT_MS bounds the headers; 0: no deadline).
WEB_BODY_TIMEOUT_SECONDS = env.float("WEB_BODY_TIMEOUT_SECONDS", default=5.0)

# --- Email --------------------------------------------------------------------------------
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(BASE_DIR / ".run" / "mail"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Flash Sale <orders@flashsale.localhost>")

# --- Static files and i18n ----------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
LANGUAGE_CODE = "en-us"
# Times are aware UTC inside (the database, Redis, the API); the shop's zone is only how the
# admin, manage.py and the pages show and take them (core/shop_time.py).
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# The wall clock the shop schedules its sales by: an IANA name (Asia/Shanghai, Europe/Paris).
SHOP_TIME_ZONE = env.str("SHOP_TIME_ZONE", default="UTC")

# Logs (core/logs.py): JSON lines for an operator's search, or console lines for a person;
# every logger, the servers' access logs included, through the same formatter.
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="console")
try:
    LOGGING = logging_config(level=log_level_valid(LOG_LEVEL), fmt=LOG_FORMAT.strip().lower())
except ValueError as error:
    raise ImproperlyConfigured(str(error)) from None

# --- The sale -----------------------------------------------------------------------------
# Sales starting within this many seconds are loaded into Redis by beat.
FLASHSALE_WARM_LEAD_SECONDS = env.int("FLASHSALE_WARM_LEAD_SECONDS", default=30 * 60)
# Beat's drain, claim and reconcile tick while a sale is live or has a backlog.
FLASHSALE_RECONCILE_INTERVAL_SECONDS = env.float("FLASHSALE_RECONCILE_INTERVAL_SECONDS", default=5.0)
# A stream entry delivered to a worker and not acknowledged for this long is reclaimed.
FLASHSALE_CLAIM_IDLE_MS = env.int("FLASHSALE_CLAIM_IDLE_MS", default=30_000)
# Seconds a winner has to pay before the order expires and its unit goes back on sale;
# 0 (the default, no payment step is wired in) keeps orders pending until paid or cancelled.
FLASHSALE_PAYMENT_WINDOW_SECONDS = env.int("FLASHSALE_PAYMENT_WINDOW_SECONDS", default=0)
# A win kicks a drain task at most once per this many milliseconds per sale; a drain that
# ends inside the window runs once more when it closes (no win waits for beat).
FLASHSALE_DRAIN_KICK_MS = env.int("FLASHSALE_DRAIN_KICK_MS", default=250)
# A web process re-reads a sale's meta (window, plan, stock, the Redis clock) this often;
# an operator's change is announced at once anyway.
FLASHSALE_META_LOCAL_SECONDS = env.float("FLASHSALE_META_LOCAL_SECONDS", default=2.0)
# Stock-aware admission counts attempts per interval of this length (the sale's crowd_factor
# times the stock left is what each process lets through per interval).
FLASHSALE_CROWD_INTERVAL_MS = env.int("FLASHSALE_CROWD_INTERVAL_MS", default=1000)
# A queue-mode sale: an admitted shopper's turn lasts while the line moves on by about this
# many seconds of its serving rate past them; then they may join again at the back.
FLASHSALE_QUEUE_TURN_SECONDS = env.int("FLASHSALE_QUEUE_TURN_SECONDS", default=60)
# Stream entries a worker turns into orders per transaction.
FLASHSALE_DRAIN_BATCH_SIZE = env.int("FLASHSALE_DRAIN_BATCH_SIZE", default=500)
# Sales stay watched (reconciled, listed as active) this long after they end.
FLASHSALE_WATCH_AFTER_END_SECONDS = env.int("FLASHSALE_WATCH_AFTER_END_SECONDS", default=24 * 3600)
# --- The transparency log (docs/design.md, "The transparency log") -------------------------
# Its signing keys (LOG_SIGNING_KEYS) are read with the sequencing's settings below.
# A sale's log is named "<LOG_ORIGIN>/<sale id>" in its checkpoints (printable ASCII, no space
# and no "+"), fixed for the sale when its log is created.
LOG_ORIGIN = env.str("LOG_ORIGIN", default="flashsale.localhost/sales")
# Beat's log builder tick: each tick moves the new entries of every watched sale into
# PostgreSQL and signs a checkpoint over them, so a checkpoint lags its newest entry by about
# a tick plus the pass.
FLASHSALE_LOG_INTERVAL_SECONDS = env.float("FLASHSALE_LOG_INTERVAL_SECONDS", default=1.0)
# Entries the builder appends per transaction (and per checkpoint).
FLASHSALE_LOG_BATCH_SIZE = env.int("FLASHSALE_LOG_BATCH_SIZE", default=1000)
# A sale's log is frozen with a final checkpoint once the sale ended this long ago; the
# margin covers attempts judged by the script in the last instant of the window.
FLASHSALE_LOG_FREEZE_AFTER_END_SECONDS = env.int("FLASHSALE_LOG_FREEZE_AFTER_END_SECONDS", default=30)
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
    "sweep-rehearsals": {
        "task": "operations.tasks.sweep_rehearsals",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    "send-overdue-webhooks": {
        "task": "orders.tasks.send_overdue_webhooks",
        "schedule": 30.0,
        "options": {"expires": 30.0},
    },
    "build-sale-logs": {
        "task": "salelog.tasks.build_sale_logs",
        "schedule": FLASHSALE_LOG_INTERVAL_SECONDS,
        "options": {"expires": FLASHSALE_LOG_INTERVAL_SECONDS},
    },
}
# Rehearsals started from the admin: a Celery worker sends their crowd to the stack here (the
# REST API) and, when asked, to its TCP door (host:port) (docs/operating.md, "Rehearsing").
FLASHSALE_REHEARSAL_URL = env.str("FLASHSALE_REHEARSAL_URL", default="http://127.0.0.1:8000")
FLASHSALE_REHEARSAL_TCP = env.str("FLASHSALE_REHEARSAL_TCP", default="127.0.0.1:8002")

# --- Webhooks and payments (docs/design.md, "Webhooks and payments") ---------------------------
# The shop's address as its shoppers reach it: the email's order and pay links start with it
# (empty: the email carries no link).
FLASHSALE_SITE_URL = env.str("FLASHSALE_SITE_URL", default="")
# The payment step: a provider (dotted path to its class) and, for the built-in hosted
# checkout, the shop's checkout page the winner is sent to (empty: no pay link is offered).
FLASHSALE_PAYMENT_PROVIDER = env.str("FLASHSALE_PAYMENT_PROVIDER", default="orders.payments.HostedCheckout")
FLASHSALE_PAYMENT_CHECKOUT_URL = env.str("FLASHSALE_PAYMENT_CHECKOUT_URL", default="")
# One attempt's connection and each read wait at most this long.
WEBHOOKS_TIMEOUT_SECONDS = env.float("WEBHOOKS_TIMEOUT_SECONDS", default=15.0)
# The wait after the 1st, 2nd, ... failed attempt; once spent, the delivery is a dead letter.
# The default follows the Standard Webhooks example: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h,
# the last attempt at least 31.5 hours after the first.
WEBHOOKS_RETRY_DELAYS_SECONDS = seconds_list(
    "WEBHOOKS_RETRY_DELAYS_SECONDS",
    env.list("WEBHOOKS_RETRY_DELAYS_SECONDS", default=["5", "300", "1800", "7200", "18000", "36000", "50400"]),
)
# Each wait is lengthened by a random share up to this (never shortened).
WEBHOOKS_RETRY_JITTER = env.float("WEBHOOKS_RETRY_JITTER", default=0.2)
# An endpoint is paused after this many failed attempts in a row spanning at least this long.
WEBHOOKS_PAUSE_AFTER_FAILURES = env.int("WEBHOOKS_PAUSE_AFTER_FAILURES", default=10)
WEBHOOKS_PAUSE_AFTER_SECONDS = env.float("WEBHOOKS_PAUSE_AFTER_SECONDS", default=24 * 3600.0)
# After a secret's rotation the old one still signs and verifies this long.
WEBHOOKS_SECRET_OVERLAP_SECONDS = env.float("WEBHOOKS_SECRET_OVERLAP_SECONDS", default=24 * 3600.0)
# Server-side request forgery guard: a webhook URL resolving to a loopback, link-local or
# private address is refused, unless allowed for every endpoint, or (opt-in) for those
# registered with --allow-private.
WEBHOOKS_ALLOW_PRIVATE = env.bool("WEBHOOKS_ALLOW_PRIVATE", default=False)
WEBHOOKS_ALLOW_PRIVATE_OPT_IN = env.bool("WEBHOOKS_ALLOW_PRIVATE_OPT_IN", default=False)
# The Celery queue delivery tasks go to (the workers' default queue unless set).
WEBHOOKS_QUEUE = env.str("WEBHOOKS_QUEUE", default="celery")
# The demo shop's checkout and receiver under /demo-shop/: only the local settings turn it on.
FLASHSALE_DEMO_SHOP = False
FLASHSALE_DEMO_SHOP_SECRET = ""
FLASHSALE_DEMO_SHOP_LOG = ""

# `make bench` only: mount /bench/control/ and the naive shop under /bench/ (404 otherwise).
FLASHSALE_BENCH_ENDPOINTS = env.bool("FLASHSALE_BENCH_ENDPOINTS", default=False)
# Where the storefront opens its WebSocket; empty means the page's own host. The operator
# console's socket is on the same server.
FLASHSALE_WS_URL = env.str("FLASHSALE_WS_URL", default="")
# The console keeps each sale's figures this long after it last recorded one (for review).
FLASHSALE_CONSOLE_KEEP_SECONDS = env.int("FLASHSALE_CONSOLE_KEEP_SECONDS", default=14 * 24 * 3600)

# --- The balancer in front (core/client_address.py) ----------------------------------------
# Peers that may say who a request is for (X-Forwarded-For, X-Forwarded-Proto, X-Request-ID,
# the PROXY protocol on the TCP door): loopback always, and these CIDRs (the balancer's
# network). Anyone else's forwarding headers are dropped.
TRUSTED_PROXY_NETWORKS = env.list("TRUSTED_PROXY_NETWORKS", default=[])

# --- Anti-bot (README: "The knobs") ---------------------------------------------------------
# The header a trusted proxy sets to the client's address ("X-Real-IP", "X-Forwarded-For");
# empty: the TCP peer (REMOTE_ADDR). Believed only from TRUSTED_PROXY_NETWORKS.
ANTIBOT_CLIENT_IP_HEADER = env.str("ANTIBOT_CLIENT_IP_HEADER", default="")
# With X-Forwarded-For: how many proxies of ours append to it (the client is that many from the right).
ANTIBOT_TRUSTED_PROXY_COUNT = env.int("ANTIBOT_TRUSTED_PROXY_COUNT", default=1)
# Calls (challenges and purchases together) one user / one IP may make on a sale per window;
# 0 turns a limit off. The IP limit is loose: offices and mobile carriers share addresses.
ANTIBOT_USER_LIMIT = env.int("ANTIBOT_USER_LIMIT", default=10)
ANTIBOT_IP_LIMIT = env.int("ANTIBOT_IP_LIMIT", default=200)
ANTIBOT_RATE_WINDOW_SECONDS = env.int("ANTIBOT_RATE_WINDOW_SECONDS", default=1)
# Proof of work: a challenge lives this long; adaptive difficulty adds a bit per doubling of
# the sale's challenge rate above the base rate, up to the ceiling.
ANTIBOT_CHALLENGE_TTL_SECONDS = env.int("ANTIBOT_CHALLENGE_TTL_SECONDS", default=60)
ANTIBOT_POW_BASE_RATE = env.int("ANTIBOT_POW_BASE_RATE", default=200)
ANTIBOT_POW_MAX_DIFFICULTY = env.int("ANTIBOT_POW_MAX_DIFFICULTY", default=22)
ANTIBOT_CHALLENGE_SECRET = env.str("ANTIBOT_CHALLENGE_SECRET", default="")
# The transparency log (docs/design.md): every attempt that reaches a sale's script, and
# every join that gives a number, is appended to the sale's log and answered with a receipt
# signed by the first of LOG_SIGNING_KEYS ("<key id>:<base64 32-byte Ed25519 seed>,...";
# empty: a development key derived from SECRET_KEY). Shoppers appear in the log as an HMAC
# under a key derived from LOG_SHOPPER_SECRET (SECRET_KEY when empty).
FLASHSALE_LOG_ENABLED = env.bool("FLASHSALE_LOG_ENABLED", default=True)
LOG_SIGNING_KEYS = env.list("LOG_SIGNING_KEYS", default=[])
LOG_SHOPPER_SECRET = env.str("LOG_SHOPPER_SECRET", default="")
# Queue passes (a queue-mode sale's place in line) are signed with a key derived from this
# (SECRET_KEY when empty).
QUEUE_PASS_SECRET = env.str("QUEUE_PASS_SECRET", default="")
# Idempotency-Key: only final answers are kept (docs/design.md), at most this many per shopper
# and sale, until this long after the sale's end, and never longer than the TTL.
ANTIBOT_IDEMPOTENCY_KEYS_PER_SHOPPER = env.int("ANTIBOT_IDEMPOTENCY_KEYS_PER_SHOPPER", default=8)
ANTIBOT_IDEMPOTENCY_AFTER_END_SECONDS = env.int("ANTIBOT_IDEMPOTENCY_AFTER_END_SECONDS", default=600)
ANTIBOT_IDEMPOTENCY_TTL_SECONDS = env.int("ANTIBOT_IDEMPOTENCY_TTL_SECONDS", default=24 * 3600)

# --- The TCP front door (docs/tcp.md) ----------------------------------------------------
# A frame's payload may be at most this long; a longer LENGTH answers ERROR and closes.
TCP_MAX_FRAME_BYTES = env.int("TCP_MAX_FRAME_BYTES", default=64 * 1024)
# Open connections in all, and from one address; one more is answered ERROR and closed (0: no limit).
TCP_MAX_CONNECTIONS = env.int("TCP_MAX_CONNECTIONS", default=10_000)
TCP_MAX_CONNECTIONS_PER_IP = env.int("TCP_MAX_CONNECTIONS_PER_IP", default=256)
# Frames one connection may have in flight (pipelined); past it the door stops reading it.
TCP_MAX_IN_FLIGHT = env.int("TCP_MAX_IN_FLIGHT", default=64)
# A connection with nothing in flight is closed after this long without a frame.
TCP_IDLE_TIMEOUT_SECONDS = env.float("TCP_IDLE_TIMEOUT_SECONDS", default=60.0)
# A frame begun must have arrived whole this long after its first byte (slow senders).
TCP_FRAME_TIMEOUT_SECONDS = env.float("TCP_FRAME_TIMEOUT_SECONDS", default=10.0)
# A client that stops reading its answers is cut off after this long (its buffer full).
TCP_WRITE_TIMEOUT_SECONDS = env.float("TCP_WRITE_TIMEOUT_SECONDS", default=10.0)
# On SIGTERM: stop accepting, answer what was received, close; at most this long.
TCP_SHUTDOWN_GRACE_SECONDS = env.float("TCP_SHUTDOWN_GRACE_SECONDS", default=10.0)
# Networks (CIDRs) besides loopback where --trust-user-id may listen and be connected from.
TCP_TRUSTED_NETWORKS = env.list("TCP_TRUSTED_NETWORKS", default=[])
# Behind a TCP balancer: a connection from TRUSTED_PROXY_NETWORKS (or loopback) may start
# with a PROXY protocol v2 header naming the shopper's address (HAProxy's send-proxy-v2).
TCP_PROXY_PROTOCOL = env.bool("TCP_PROXY_PROTOCOL", default=False)

# --- Metrics (README: "Observability") ------------------------------------------------------
# /metrics answers loopback always, these networks (CIDRs), and a request carrying
# "Authorization: Bearer <METRICS_BEARER_TOKEN>" when a token is set; anyone else gets 403.
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=[])
METRICS_BEARER_TOKEN = env.str("METRICS_BEARER_TOKEN", default="")
# A scrape pings the Celery workers and waits this long for answers (flash_sale_celery_workers);
# 0 leaves the metric out.
METRICS_CELERY_PING_SECONDS = env.float("METRICS_CELERY_PING_SECONDS", default=0.5)
# Read the stack-wide metrics (sales from Redis and PostgreSQL, Celery workers) on each scrape.
# Off where another scraped process already reports them (compose's ws containers).
METRICS_STACK_COLLECTOR = env.bool("METRICS_STACK_COLLECTOR", default=True)
# django-prometheus's per-request HTTP metrics: off by default, they cost every request on the
# hot path (measured in the README); the sale's own purchase metrics are always on.
METRICS_HTTP_MIDDLEWARE = env.bool("METRICS_HTTP_MIDDLEWARE", default=False)
if METRICS_HTTP_MIDDLEWARE:
    MIDDLEWARE = [
        "django_prometheus.middleware.PrometheusBeforeMiddleware",
        *MIDDLEWARE,
        "django_prometheus.middleware.PrometheusAfterMiddleware",
    ]

# --- API docs ---------------------------------------------------------------------------------
# /api/docs/ (Swagger UI) with its JavaScript and CSS served by this server from the
# drf-spectacular-sidecar wheel (collectstatic picks them up), never from a CDN.
INSTALLED_APPS += ["drf_spectacular_sidecar"]
SPECTACULAR_SETTINGS |= {
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Storefront WebSockets, the ws process (docs/websockets.md) -----------------------------
# Sockets one ws process takes; 0: as many as its open-file limit allows (the process raises
# its soft limit to the hard limit at start and logs the number). Past it, a socket is closed
# with 1013 (try again later), as is one more from an address already holding
# WS_MAX_CONNECTIONS_PER_IP (0: no per-address cap; the address is the TCP peer's, so behind a
# proxy set 0 and cap at the proxy).
WS_MAX_CONNECTIONS = env.int("WS_MAX_CONNECTIONS", default=0)
WS_MAX_CONNECTIONS_PER_IP = env.int("WS_MAX_CONNECTIONS_PER_IP", default=64)
# A socket whose client stops reading: the kernel keeps at most this much unsent for it, the
# process at most this much more; beyond that, or when its bytes wait longer than
# WS_SEND_TIMEOUT_SECONDS, the socket is cut off.
WS_SEND_BUFFER_BYTES = env.int("WS_SEND_BUFFER_BYTES", default=32768)
WS_SEND_TIMEOUT_SECONDS = env.float("WS_SEND_TIMEOUT_SECONDS", default=10.0)
