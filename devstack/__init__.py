"""The local process toolkit: real Redis and PostgreSQL from wheels (``localservers``), the
one table of the stack's command lines (``procfile``), readiness probes (``probes``), child
processes that die with their run (``children``) and ``make run``'s supervisor.

``make run``, the tests and the benchmark all start the stack through this package; the
containers run ``python -m devstack.proc <name>``. Nothing here imports Django.
"""
