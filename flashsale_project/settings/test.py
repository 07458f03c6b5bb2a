"""The test suite: real servers (the fixtures export their URLs), fast hashing, mail to files."""

from .base import *  # noqa: F403
from .base import BASE_DIR, INSTALLED_APPS
from .environment import env

# The benchmark's baseline shop is tested too; no deployment installs it.
INSTALLED_APPS = [*INSTALLED_APPS, "naive_shop"]

DEBUG = False
SECRET_KEY = env.str("SECRET_KEY", default="test-only-not-secret")
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.filebased.EmailBackend")
# The suite's receivers listen on loopback: endpoints registered with allow_private may
# reach them, the others are refused as in production.
WEBHOOKS_ALLOW_PRIVATE_OPT_IN = env.bool("WEBHOOKS_ALLOW_PRIVATE_OPT_IN", default=True)
# The demo shop, for the test that pays through it as make run's winner does.
FLASHSALE_DEMO_SHOP = env.bool("FLASHSALE_DEMO_SHOP", default=False)
FLASHSALE_DEMO_SHOP_SECRET = env.str("FLASHSALE_DEMO_SHOP_SECRET", default="")
FLASHSALE_DEMO_SHOP_LOG = env.str("FLASHSALE_DEMO_SHOP_LOG", default=str(BASE_DIR / "artifacts" / "demo-shop.log"))
