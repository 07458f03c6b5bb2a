"""The test suite: real servers (the fixtures export their URLs), fast hashing, mail to files."""

from .base import *  # noqa: F403
from .base import INSTALLED_APPS
from .environment import env

# The benchmark's baseline shop is tested too; no deployment installs it.
INSTALLED_APPS = [*INSTALLED_APPS, "naive_shop"]

DEBUG = False
SECRET_KEY = env.str("SECRET_KEY", default="test-only-not-secret")
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.filebased.EmailBackend")
