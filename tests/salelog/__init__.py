LOG_QUEUE = "salelog-tests"
"""The Celery queue of these tests' log worker (``conftest.log_worker``)."""
