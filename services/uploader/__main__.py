"""``python -m services.uploader``: the same as ``arcstream uploader``."""

from __future__ import annotations

import sys

from services.cli import main

if __name__ == "__main__":
    sys.exit(main(["uploader", *sys.argv[1:]]))
