"""Observability, an adapter on top of the apps: the scrape-time collector of stack-wide
metrics, ``/metrics`` and the probes (``/livez``, ``/readyz``)."""
