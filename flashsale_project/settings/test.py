"""The test suite: real servers (the fixtures export their URLs), fast hashing, mail to files."""

from .base import *  # noqa: F403
from .environment import env_str

DEBUG = False
SECRET_KEY = env_str("SECRET_KEY", "test-only-not-secret")
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
