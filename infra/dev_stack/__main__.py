"""`python -m dev_stack` (with infra/ on the path, as infra/stack runs it)."""

import sys

from .cli import main

sys.exit(main(sys.argv[1:]))
