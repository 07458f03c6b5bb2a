"""The operator's adapter: management commands (``flashsale``, ``demo``) on top of the apps."""
