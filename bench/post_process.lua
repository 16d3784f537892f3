-- wrk -s bench/post_process.lua: every request processes the same sentence (POST /api/process).
wrk.method = "POST"
wrk.body = '{"input": "The quick brown fox jumps over the lazy dog"}'
wrk.headers["Content-Type"] = "application/json"
