"""What the browser tests rely on the harness to notice (tests/browser/conftest.py).

The console's XSS tests pass when no dialog opens, its pages' tests when no script
fails and nothing loads from elsewhere, its accessibility tests when axe-core finds
nothing serious: each passes vacuously if the watcher behind it stopped watching. Here
each watcher is shown a page that trips it.
"""

from __future__ import annotations

import pytest

#: A page that does, once each, what no console page may: open a dialog (the proof an
#: XSS payload ran), log an error, throw, and load from another host.
MISBEHAVING = """<!doctype html><html lang="en"><title>Misbehaving</title>
<img alt="elsewhere" src="http://cdn.example.invalid/logo.png">
<script>console.error("logged on purpose"); alert("payload ran")</script>
<script>throw new Error("thrown on purpose")</script>
<main><h1>Misbehaving</h1></main></html>"""

#: A page with two critical axe-core violations: an image without a text alternative
#: and a field without a label.
INACCESSIBLE = """<!doctype html><html lang="en"><title>Inaccessible</title>
<main><h1>Inaccessible</h1><img src="/favicon.ico"><form><input name="email"></form></main>
</html>"""

ACCESSIBLE = """<!doctype html><html lang="en"><title>Accessible</title>
<main><h1>Accessible</h1><form><label>Email <input name="email"></label>
<button>Sign in</button></form></main></html>"""


def test_what_a_page_does_wrong_is_recorded(page, page_problems, cross_site):
    page.goto(cross_site(MISBEHAVING))
    page.wait_for_load_state("load")
    recorded = "\n".join(page_problems.problems)
    assert "a request left this machine: GET http://cdn.example.invalid/logo.png" in recorded
    assert "console error: logged on purpose" in recorded
    assert "a dialog (alert) opened: a script ran: 'payload ran'" in recorded
    assert "uncaught error: thrown on purpose" in recorded
    assert any(url.startswith("http://localhost:") for url in page_problems.requests)
    page_problems.problems.clear()  # recorded as they must be: this test passes


def test_only_the_console_errors_a_test_expects_are_let_through(page, page_problems):
    page_problems.allow(r"status of 404 \(Not Found\)")
    page.goto("/no-such-page")
    page.evaluate("console.error('not expected')")
    page.wait_for_function("true")  # the console message has come back from the browser
    assert [problem.partition(" (")[0] for problem in page_problems.problems] == [
        "console error: not expected"
    ]
    page_problems.problems.clear()


def test_check_accessibility_fails_naming_each_serious_violation(
    page, cross_site, check_accessibility
):
    page.goto(cross_site(ACCESSIBLE))
    check_accessibility(page)  # passes: nothing to report

    page.goto(cross_site(INACCESSIBLE))
    with pytest.raises(pytest.fail.Exception) as failed:
        check_accessibility(page)
    report = str(failed.value)
    assert "- image-alt (critical)" in report
    assert "- label (critical)" in report
    assert "at img" in report
