"""Never oversell: many buyers at once, across several app instances (as several worker
processes would be, each with its own connection pool), racing for the last units."""

from __future__ import annotations

import random
import threading
from collections import Counter

from tests.items.factories import create_item

#: Stock of the three contested items: 50 units in all.
STOCK = (25, 15, 10)


def race(apps, auth: str, baskets: list[list[dict]]) -> list[tuple[int, dict, list]]:
    """Every basket ordered at once, by its own thread, spread over the app instances."""
    answers: list[tuple[int, dict, list]] = []
    lock = threading.Lock()
    start = threading.Barrier(len(baskets))

    def buy(n: int, basket: list) -> None:
        http = apps[n % len(apps)].test_client()
        start.wait()
        response = http.post("/api/orders", json={"lines": basket}, headers={"Authorization": auth})
        with lock:
            answers.append((response.status_code, response.json, basket))

    threads = [threading.Thread(target=buy, args=(n, b)) for n, b in enumerate(baskets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return answers


def test_concurrent_orders_never_oversell_nor_deadlock(make_app, database_url, client):
    postgres = database_url.startswith("postgresql")
    buyers = 200 if postgres else 40  # SQLite serialises writers: fewer is enough
    apps = [make_app(DATABASE_URL=database_url, DB_POOL_SIZE="10") for _ in range(3)]
    auth = client.environ_base["HTTP_AUTHORIZATION"]
    rng = random.Random(20261122)  # reproducible shuffles, not secrets
    for round_no in range(3):
        items = [
            create_item(client, name=f"Last units {round_no}.{n}", quantity=q)
            for n, q in enumerate(STOCK)
        ]
        baskets = [
            [{"item_id": item["id"], "quantity": rng.randint(1, 3)} for item in chosen]
            for chosen in (rng.sample(items, rng.randint(1, 3)) for _ in range(buyers))
        ]
        answers = race(apps, auth, baskets)
        assert len(answers) == buyers
        statuses = Counter(status for status, _, _ in answers)
        assert set(statuses) <= {201, 409}, statuses  # no 500, no deadlock
        sold: Counter[str] = Counter()
        for status, body, basket in answers:
            if status == 201:
                for line in body["lines"]:
                    sold[line["item_id"]] += line["quantity"]
                continue
            assert body["shortages"], body
            for short in body["shortages"]:
                wanted = sum(
                    line["quantity"] for line in basket if line["item_id"] == short["item_id"]
                )
                assert short["requested"] == wanted
                assert short["available"] < wanted
        for item, initial in zip(items, STOCK, strict=True):
            left = client.get(f"/api/items/{item['id']}").json["quantity"]
            assert left >= 0
            assert sold[item["id"]] + left == initial
        assert statuses[201] >= 1
        assert statuses[409] >= 1  # demand (about 400 units) exceeds the 50 in stock
