"""One module per ``bergab`` command; each exposes ``register(subparsers)``."""
