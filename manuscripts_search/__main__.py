"""`python -m manuscripts_search ...` runs the `msearch` command line."""
import sys

from .cli import main

sys.exit(main())
