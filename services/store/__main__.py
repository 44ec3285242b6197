"""``python -m services.store``: the same as ``arcstream store``."""

from __future__ import annotations

import sys

from services.cli import main

if __name__ == "__main__":
    sys.exit(main(["store", *sys.argv[1:]]))
