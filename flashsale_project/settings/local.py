"""A developer's machine: debug on, mail written to files, the stack ``make run`` started.

``make run`` writes the URLs of the Redis and PostgreSQL it started to ``.run/stack.env``;
reading it here lets ``manage.py`` commands in another terminal reach the same servers.
"""

from pathlib import Path

from .environment import env

_STACK_ENV = Path(__file__).resolve().parent.parent.parent / ".run" / "stack.env"
if _STACK_ENV.exists():
    env.read_env(_STACK_ENV)  # Variables already set win: an operator's export always counts.

from .base import *  # noqa: E402, F403
from .base import BASE_DIR  # noqa: E402

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env.str("SECRET_KEY", default="local-development-only-not-secret")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(BASE_DIR / ".run" / "mail"))
