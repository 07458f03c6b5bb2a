"""The benchmark's settings: production's, with three differences (README, "Benchmark").

- The baselines are installed (the naive shop, no deployment has it) and their endpoints
  (``/bench/control/``, the naive shop) mounted.
- Order confirmations are queued to a queue no benchmark worker consumes. On a 2-core machine
  shared with the load generator, rendering tens of thousands of emails would take CPU from
  the requests being measured; order persistence (what invariant I2 checks) runs as usual.
"""

from flashsale_project.settings.production import *  # noqa: F403
from flashsale_project.settings.production import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "naive_shop"]

FLASHSALE_BENCH_ENDPOINTS = True
CELERY_TASK_ROUTES = {"orders.tasks.send_order_confirmations": {"queue": "bench-confirmations"}}
