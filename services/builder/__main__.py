"""``python -m services.builder [--group ID] [--workers N] [--engine NAME]``: the builder service."""

import sys

from services.cli import main

sys.exit(main(["builder", *sys.argv[1:]]))
