"""The log's names in Redis besides the sale's stream (``sales.keys.log_stream_key``)."""

CHECKPOINTS_CHANNEL = "flashsale_log_checkpoints"
"""Each new checkpoint of a sale's log, once committed: ``{"sale_id", "checkpoint"}``, the
checkpoint being the signed note's text (the sale's socket relays it)."""
