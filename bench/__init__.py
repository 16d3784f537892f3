"""`python -m bench`: load-test Backoffice under its production server, beside two references.

The references run under the very same server settings: `reference_raw` (the smallest WSGI
app, the server's ceiling) and `reference_flask` (a tutorial in-memory Flask app, the
framework's ceiling). Results go to the terminal and to `bench/results/`.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
