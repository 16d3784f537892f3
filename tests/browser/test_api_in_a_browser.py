"""The API as Chromium meets it, on the production server (`deploy/serve`).

- `/docs` renders offline: Swagger UI and the OpenAPI document come from the server
  itself, its inline script and style run under the page's CSP (a blocked one is a
  console error, which fails the test), and no request leaves this machine.
- CORS is off by default: a page of another site cannot read the API, not even a
  public answer, nor with a token it holds; the server's own pages can.
"""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

#: The message Chromium logs (a console error) for a read it refuses by CORS, and the
#: failed load it logs with it.
CORS_REFUSALS = (r"has been blocked by CORS policy", r"Failed to load resource: net::ERR_FAILED")

#: Reads `url` with `init`, and says how it went: the status, or the error the browser
#: gave the script instead of the answer.
READ = """async ([url, init]) => {
    try {
        const response = await fetch(url, init);
        return {status: response.status, body: await response.text()};
    } catch (error) {
        return {error: String(error)};
    }
}"""


@pytest.mark.screenshots
def test_the_docs_page_renders_offline_under_its_csp(
    page, page_problems, console_server, screenshot
):
    page.goto("/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Backoffice API")
    # The operations are listed: the document was fetched and rendered.
    expect(page.locator(".opblock").first).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/api/auth/token").first).to_be_visible()
    assert f"{console_server.url}/openapi.json" in page_problems.requests
    assert f"{console_server.url}/docs/assets/swagger-ui-bundle.js" in page_problems.requests
    outside = [url for url in page_problems.requests if not url.startswith(console_server.url)]
    assert outside == []
    screenshot(page, "api-docs", full_page=False)


def test_another_site_cannot_read_the_api(page, page_problems, console_server, cross_site):
    member = console_server.make_user()
    bearer = {"headers": {"Authorization": f"Bearer {console_server.token(member)}"}}
    me, health = f"{console_server.url}/api/users/me", f"{console_server.url}/health"

    # The server's own page reads both: the refusals below are the origin's, nothing else.
    # (/docs: the one page whose CSP lets it fetch, `connect-src 'self'`.)
    page.goto("/docs", wait_until="domcontentloaded")
    own = page.evaluate(READ, [me, bearer])
    assert own["status"] == 200
    assert json.loads(own["body"])["email"] == member.email
    assert page.evaluate(READ, [health, {}])["status"] == 200

    for refusal in CORS_REFUSALS:
        page_problems.allow(refusal)
    page.goto(cross_site("<!doctype html><title>Elsewhere</title><p>Another site"))
    assert page.evaluate("location.origin") != console_server.url
    for url, init in ((me, bearer), (health, {}), (me, {"credentials": "include"})):
        answer = page.evaluate(READ, [url, init])
        assert answer == {"error": "TypeError: Failed to fetch"}, (url, init)
