"""One module per ``bergab`` command; each exposes ``register(subparsers)``.

A path a command will write is checked before its work with
:func:`bergab._validate.check_output_path`, naming the option (``--plot``).
"""
