"""A developer's machine: debug on, mail written to files, the stack ``make run`` started.

``make run`` writes the URLs of the Redis and PostgreSQL it started to ``.run/stack.env``;
reading it here lets ``manage.py`` commands in another terminal reach the same servers.
"""

from pathlib import Path

from .environment import env_bool, env_list, env_str, load_env_file

load_env_file(Path(__file__).resolve().parent.parent.parent / ".run" / "stack.env")

from .base import *  # noqa: E402, F403
from .base import BASE_DIR  # noqa: E402

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_str("SECRET_KEY", "local-development-only-not-secret")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(BASE_DIR / ".run" / "mail"))
