"""The benchmark's settings: production's, with two differences (README, "Benchmark").

- The baseline endpoints (``/bench/control/``, the naive shop) are mounted.
- Order confirmations are queued to a queue no benchmark worker consumes. On a 2-core machine
  shared with the load generator, rendering tens of thousands of emails would take CPU from
  the requests being measured; order persistence (what invariant I2 checks) runs as usual.
"""

from flashsale_project.settings.production import *  # noqa: F403

FLASHSALE_BENCH_ENDPOINTS = True
CELERY_TASK_ROUTES = {"orders.tasks.send_order_confirmations": {"queue": "bench-confirmations"}}
