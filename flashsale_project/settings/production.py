"""Production: a secret key and the host names are required, cookies are secure, nothing is guessed."""

from core.logs import log_level_valid, logging_config

from .base import *  # noqa: F403
from .base import LOG_LEVEL
from .environment import env

SECRET_KEY = env.str("SECRET_KEY")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)  # Usually the proxy's job.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_CONTENT_TYPE_NOSNIFF = True
# X-Forwarded-Proto reaches Django only from TRUSTED_PROXY_NETWORKS (core.client_address).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", default=False) else None
# A JSON object a line for the log store; LOG_FORMAT=console for a person at a terminal.
LOGGING = logging_config(level=log_level_valid(LOG_LEVEL), fmt=env.str("LOG_FORMAT", default="json").strip().lower())
