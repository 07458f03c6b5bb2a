"""A developer's machine: debug on, mail written to files, the stack ``make run`` started.

``make run`` writes the URLs of the Redis and PostgreSQL it started to ``.run/stack.env``;
reading it here lets ``manage.py`` commands in another terminal reach the same servers.
"""

from pathlib import Path

from .environment import env

_STACK_ENV = Path(__file__).resolve().parent.parent.parent / ".run" / "stack.env"
if _STACK_ENV.exists():
    env.read_env(_STACK_ENV)  # Variables already set win: an operator's export always counts.

import base64  # noqa: E402
import hashlib  # noqa: E402

from .base import *  # noqa: E402, F403
from .base import BASE_DIR  # noqa: E402

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env.str("SECRET_KEY", default="local-development-only-not-secret")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(BASE_DIR / ".run" / "mail"))

# The winner's pay link leads to the demo shop this web process serves (/demo-shop/), which
# reports the payment back signed with the secret `manage.py demo` registered its endpoint
# with, and logs every webhook it receives (docs/operating.md, "The demo shop").
FLASHSALE_SITE_URL = env.str("FLASHSALE_SITE_URL", default="http://127.0.0.1:8000")
FLASHSALE_PAYMENT_CHECKOUT_URL = env.str("FLASHSALE_PAYMENT_CHECKOUT_URL", default="/demo-shop/checkout/")
FLASHSALE_PAYMENT_WINDOW_SECONDS = env.int("FLASHSALE_PAYMENT_WINDOW_SECONDS", default=900)
WEBHOOKS_ALLOW_PRIVATE_OPT_IN = env.bool("WEBHOOKS_ALLOW_PRIVATE_OPT_IN", default=True)
FLASHSALE_DEMO_SHOP = env.bool("FLASHSALE_DEMO_SHOP", default=True)
FLASHSALE_DEMO_SHOP_SECRET = env.str(
    "FLASHSALE_DEMO_SHOP_SECRET",
    default="whsec_" + base64.b64encode(hashlib.sha256(f"demo-shop:{SECRET_KEY}".encode()).digest()).decode(),
)
FLASHSALE_DEMO_SHOP_LOG = env.str("FLASHSALE_DEMO_SHOP_LOG", default=str(BASE_DIR / ".run" / "demo-shop-webhooks.log"))
