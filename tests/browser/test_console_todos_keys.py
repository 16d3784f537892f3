"""Todos and API keys in a real browser: a member adds a todo and marks it done, creates
a key (shown once) and revokes it; each page passes axe-core."""

from __future__ import annotations

import pytest


@pytest.mark.screenshots
def test_a_member_adds_a_todo_and_marks_it_done(
    console_server, page, sign_in, check_accessibility, screenshot
):
    member = console_server.make_user()
    sign_in(page, member.email, member.password)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Todos").click()
    page.get_by_label("New todo").fill("<b>Ship</b> it")
    page.get_by_role("button", name="Add").click()
    assert page.get_by_role("link", name="<b>Ship</b> it").count() == 1  # shown as text
    page.get_by_role("button", name="Mark done: <b>Ship</b> it").click()
    assert page.get_by_role("status").inner_text() == "The todo was marked done."
    check_accessibility(page)
    screenshot(page, "console-todos")
    page.get_by_role("link", name="<b>Ship</b> it").click()
    check_accessibility(page)


@pytest.mark.screenshots
def test_a_member_creates_a_key_once_and_revokes_it(
    console_server, page, sign_in, check_accessibility, screenshot
):
    member = console_server.make_user()
    sign_in(page, member.email, member.password)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="API keys").click()
    check_accessibility(page)
    page.get_by_label("Name").fill("Deploys")
    page.get_by_role("button", name="Create key").click()
    key = page.get_by_label("Your new key").input_value()
    assert key.startswith("bo_")
    check_accessibility(page)
    screenshot(page, "console-keys")
    page.goto("/console/keys")
    assert key not in page.content()
    page.get_by_role("button", name="Revoke Deploys").click()
    assert "revoked" in page.get_by_role("status").inner_text()
    assert console_server.api().get("/api/todos", headers={"X-API-Key": key}).status_code == 401
