"""Users in a real browser: an admin deactivates a member who is signed in, and the
member's next click is refused (sent to sign in); the users pages pass axe-core."""

from __future__ import annotations

import pytest

from tests.browser.conftest import TIMEOUT_MS, VIEWPORT


@pytest.mark.screenshots
def test_a_deactivated_members_next_click_is_refused(
    console_server, browser, page, sign_in, check_accessibility, screenshot
):
    member = console_server.make_user(email="leaving@example.com", name="Leaving Soon")
    theirs = browser.new_context(base_url=console_server.url, viewport=VIEWPORT)
    theirs.set_default_timeout(TIMEOUT_MS)
    their_page = theirs.new_page()
    try:
        sign_in(their_page, member.email, member.password)
        sign_in(page, console_server.admin.email, console_server.admin.password)
        page.get_by_role("navigation", name="Console").get_by_role("link", name="Users").click()
        check_accessibility(page)
        screenshot(page, "console-users")
        page.get_by_role("link", name="Leaving Soon").click()
        check_accessibility(page)
        page.get_by_role("button", name="Deactivate").click()
        assert "deactivated" in page.get_by_role("status").inner_text()
        their_page.get_by_role("navigation", name="Console").get_by_role(
            "link", name="Todos"
        ).click()
        their_page.wait_for_url(f"{console_server.url}/console/sign-in*")
        assert their_page.get_by_role("heading", level=1).count() == 1
    finally:
        theirs.close()


def test_the_new_user_form_passes_axe(console_server, page, sign_in, check_accessibility):
    sign_in(page, console_server.admin.email, console_server.admin.password)
    page.goto("/console/users/new")
    check_accessibility(page)
