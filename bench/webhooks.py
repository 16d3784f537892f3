"""Signed deliveries for the webhook ingestion benchmark.

wrk's Lua cannot compute HMACs, so the deliveries are signed here beforehand, one per
fixed-width line (`id timestamp signature`), and post_webhook.lua reads them in turn.
Each wrk run starts at an offset taken from the clock, so runs do not resend ids (a
resend would measure the duplicate path instead of an insert).
"""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

from backoffice.webhooks.signatures import sign

SOURCE = "bench"
SECRET = "whsec_" + base64.b64encode(b"backoffice-bench-webhook-secret!").decode()
BODY = b'{"type": "bench.event", "amount": 42}'
LINE_WIDTH = 128
COUNT = 400_000


def prepare(directory: Path) -> Path:
    """Write the signed deliveries and point post_webhook.lua at them (BENCH_WEBHOOKS)."""
    path = directory / "webhooks.txt"
    now = int(time.time())
    with path.open("w") as out:
        for n in range(COUNT):
            msg_id = f"msg_{now}_{n}"
            line = f"{msg_id} {now} {sign(SECRET, msg_id, now, BODY)}"
            out.write(line.ljust(LINE_WIDTH - 1) + "\n")
    os.environ["BENCH_WEBHOOKS"] = str(path)
    return path
