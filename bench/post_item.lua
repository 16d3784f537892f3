-- wrk -s bench/post_item.lua: every request creates an item (Backoffice and the Flask reference).
wrk.method = "POST"
wrk.body = '{"name": "Bench item", "quantity": 1}'
wrk.headers["Content-Type"] = "application/json"
