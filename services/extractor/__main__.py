"""``python -m services.extractor``: the snapshot extractor (same as ``arcstream extract snapshot``)."""

import sys

from services.cli import main

sys.exit(main(["extract", "snapshot", *sys.argv[1:]]))
