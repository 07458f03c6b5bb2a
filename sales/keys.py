"""Every Redis key and channel of a sale, built in one place (docs/design.md, "Redis").

All keys of one sale share the hash tag ``{<sale id>}`` so a script touching them runs on one
Redis Cluster slot. The anti-bot measures' keys (spent challenges, the challenge rate,
idempotency records) are built by ``antibot.keys`` inside the sale's ``keyspace``.
"""

EVENTS_CHANNEL = "flashsale_events"
"""Purchase and stock-return events: ``{"product_id","sale_id","buyer","remaining","timestamp",
"order_id"}`` (``timestamp`` by the Redis clock, in ms; ``order_id`` the unit's, won or
returned)."""

SALE_UPDATES_CHANNEL = "flashsale_sale_updates"
"""A sale's window or stock plan changed: ``{"sale_id","starts_at_ms","ends_at_ms","total"}``."""

ORDERS_GROUP = "orders-persist"
"""The consumer group of Celery workers moving won orders from a sale's stream to PostgreSQL."""


def keyspace(sale_id: int) -> str:
    """The prefix of every key of the sale, hash tag included."""
    return f"sale:{{{int(sale_id)}}}"


def meta_key(sale_id: int) -> str:
    return f"{keyspace(sale_id)}:meta"


def returned_buyers_key(sale_id: int) -> str:
    """Buyers whose unit went back to the stock (order cancelled or unpaid): user -> order."""
    return f"{keyspace(sale_id)}:returned"


def stock_key(sale_id: int) -> str:
    return f"{keyspace(sale_id)}:stock"


def buyers_key(sale_id: int) -> str:
    return f"{keyspace(sale_id)}:buyers"


def line_key(sale_id: int) -> str:
    """A queue-mode sale's line: user id -> the number they were given."""
    return f"{keyspace(sale_id)}:line"


def line_state_key(sale_id: int) -> str:
    """The line's counters (``lua/line.lua``): the last number given, the serving counter, the
    pre-queue's size and the shuffle's seed."""
    return f"{keyspace(sale_id)}:line:state"


def log_stream_key(sale_id: int) -> str:
    """The sale's transparency log as the scripts append it: ``seq`` and the exact bytes of
    each ``entry`` (the log builder moves them into PostgreSQL and its Merkle tree)."""
    return f"{keyspace(sale_id)}:log"


def log_seq_key(sale_id: int) -> str:
    """The log's counter: the last sequence number given, plus one."""
    return f"{keyspace(sale_id)}:log:seq"


def orders_stream_key(sale_id: int) -> str:
    return f"{keyspace(sale_id)}:orders"


def bucket_key(sale_id: int) -> str:
    return f"{keyspace(sale_id)}:bucket"


def stats_key(sale_id: int) -> str:
    """The sale's funnel as every process counted it (``sales.tally``): ``arrived``,
    ``shed:<reason>``, ``script`` and ``answer:<STATUS>`` (the admin's live panel)."""
    return f"{keyspace(sale_id)}:stats"


def latency_key(sale_id: int) -> str:
    """The purchase answer's time in the server, counted in fixed buckets by every process
    (``sales.latency``: bucket bound in ms -> answers)."""
    return f"{keyspace(sale_id)}:latency"


def console_series_key(sale_id: int) -> str:
    """The operator console's figures, one JSON point a second while anything moved (a list,
    oldest first, trimmed to the newest points; kept for review after the sale)."""
    return f"{keyspace(sale_id)}:console"


def console_last_key(sale_id: int) -> str:
    """The sale's counters at the console's last reading (JSON), so whichever ws process
    publishes next computes the rates from the same instant."""
    return f"{keyspace(sale_id)}:console:last"


def console_publisher_key(sale_id: int) -> str:
    """Which ws process publishes the sale's console figures now (a short lease)."""
    return f"{keyspace(sale_id)}:console:publisher"


def console_sockets_key(sale_id: int) -> str:
    """Each ws process's open storefront sockets of the sale: process -> ``<count>:<at ms>``."""
    return f"{keyspace(sale_id)}:console:sockets"


def rehearsal_lock_key(sale_id: int) -> str:
    """Held while a rehearsal of the sale runs (the rehearsal's id): one at a time."""
    return f"{keyspace(sale_id)}:rehearsal"


def drain_kick_key(sale_id: int) -> str:
    return f"{keyspace(sale_id)}:drain-kick"


def dead_letter_key(sale_id: int) -> str:
    """Stream entries that could not become orders (kept for an operator, never dropped)."""
    return f"{keyspace(sale_id)}:dead-letter"


def reconcile_key(sale_id: int) -> str:
    """Reconciliation counters: ``repairs``, ``violations_i1``, ``violations_i2``."""
    return f"{keyspace(sale_id)}:reconcile"


def sale_key_pattern(sale_id: int) -> str:
    """A SCAN pattern for every key of one sale, the expiring ones included."""
    return f"{keyspace(sale_id)}:*"
