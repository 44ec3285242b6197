#!/bin/sh
# One-shot preparation before the services start; idempotent, so it runs on every `compose up`:
# topics, demo data (only into an empty database), CDC publication and replica identity.
set -eu

arcstream topics ensure

if python - <<'PY'
import os
import sys

import psycopg

with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    count = conn.execute('SELECT count(*) FROM "vInvestigation"').fetchone()[0]
sys.exit(0 if count == 0 else 1)
PY
then
    arcstream gen --investigations "${DEMO_INVESTIGATIONS}" --profile "${DEMO_PROFILE}"
else
    echo "source database already holds investigations: no demo data generated"
fi

arcstream cdc setup
