"""The `msearch` sub-commands, one module per area; `cli.py` imports them all."""
