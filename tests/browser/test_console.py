"""The console in Chromium: signing in and out (also by keyboard alone), items with a lost
race, data and query strings shown as text, a form posted from another site refused,
members kept from admin pages and from others' rows, axe-core on the pages."""

from __future__ import annotations

import uuid

import pytest

from backoffice import activity
from tests.browser.conftest import TIMEOUT_MS, VIEWPORT
from tests.support import eventually

XSS_NAME = '<img src=x onerror="alert(\'name\')"><script>alert("name")</script>'
XSS_QUERY = '"><script>alert("query")</script>'


def test_sign_in_and_out(console_server, page, sign_in, sign_out, check_accessibility):
    page.goto(f"{console_server.url}/console/items")
    page.wait_for_url(f"{console_server.url}/console/sign-in?next=*")
    check_accessibility(page)
    sign_in(page, console_server.admin.email, console_server.admin.password)
    assert page.get_by_role("heading", level=1).inner_text() == "Overview"
    check_accessibility(page)
    cookie = next(c for c in page.context.cookies() if c["name"] == "console_session")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    sign_out(page)
    assert "You are signed out." in page.get_by_role("status").inner_text()
    page.goto(f"{console_server.url}/console/items")
    page.wait_for_url(f"{console_server.url}/console/sign-in?next=*")


def test_a_wrong_password_says_so_and_signs_nobody_in(console_server, page, page_problems):
    page_problems.allow(r"status of 401")
    page.goto(f"{console_server.url}/console/sign-in")
    page.get_by_label("Email", exact=True).fill(console_server.admin.email)
    page.get_by_label("Password", exact=True).fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    assert "not correct" in page.get_by_role("alert").inner_text()
    assert not [c for c in page.context.cookies() if c["name"] == "console_session"]


def test_keyboard_alone_signs_in_and_reaches_a_page(console_server, page):
    page.goto(f"{console_server.url}/console/sign-in")
    assert page.evaluate("document.activeElement.name") == "email"  # autofocus
    page.keyboard.type(console_server.admin.email)
    page.keyboard.press("Tab")
    page.keyboard.type(console_server.admin.password)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{console_server.url}/console/")
    page.keyboard.press("Tab")  # the skip link comes first
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(20):  # Tab along the navigation until Items has the focus
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Items":
            break
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # the focus is visible
    page.keyboard.press("Enter")
    page.wait_for_url(f"{console_server.url}/console/items")


@pytest.mark.screenshots
def test_an_item_edit_that_lost_a_race_shows_the_current_values(
    console_server, page, sign_in, check_accessibility, screenshot, page_problems
):
    page_problems.allow(r"status of 409")
    api = console_server.api(console_server.admin)
    for number, quantity in enumerate([120, 3, 48]):
        api.post("/api/items", json={"name": f"Bracket {number}", "quantity": quantity})
    sign_in(page, console_server.admin.email, console_server.admin.password)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Items").click()
    assert page.get_by_role("row", name="Bracket 1").get_by_text("low").is_visible()
    check_accessibility(page)
    screenshot(page, "console-items")
    page.get_by_role("link", name="Bracket 0").click()
    item_id = page.url.rsplit("/", 1)[-1]
    changed = api.patch(f"/api/items/{item_id}", json={"quantity": 7})
    assert changed.status_code == 200
    page.get_by_label("Quantity").fill("150")
    page.get_by_role("button", name="Save").click()
    alert = page.get_by_role("alert")
    assert "Someone else changed this item" in alert.inner_text()
    assert "7" in alert.locator("dd").nth(2).inner_text()
    assert page.get_by_label("Quantity").input_value() == "150"
    check_accessibility(page)
    page.get_by_role("button", name="Save").click()  # now knowingly over theirs
    assert "The item was saved." in page.get_by_role("status").inner_text()
    assert api.get(f"/api/items/{item_id}").json()["quantity"] == 150


def test_data_and_query_strings_are_shown_as_text(console_server, page, sign_in):
    """The page fixture fails the test on any dialog or script error: a payload that ran."""
    api = console_server.api(console_server.admin)
    assert api.post("/api/items", json={"name": XSS_NAME, "quantity": 1}).status_code == 201
    sign_in(page, console_server.admin.email, console_server.admin.password)
    page.goto(f"{console_server.url}/console/items?q={XSS_QUERY}")
    assert page.get_by_label("Search names").input_value() == XSS_QUERY
    page.goto(f"{console_server.url}/console/items")
    page.get_by_role("link", name=XSS_NAME).click()
    assert page.get_by_role("heading", level=1).inner_text() == XSS_NAME
    assert page.locator("img[src=x]").count() == 0


def test_a_form_posted_from_another_site_is_refused(
    console_server, page, sign_in, cross_site, page_problems
):
    page_problems.allow(r"status of 403")
    sign_in(page, console_server.admin.email, console_server.admin.password)
    form = (
        f'<form method="post" action="{console_server.url}/console/items">'
        '<input name="name" value="Planted"><input name="quantity" value="1">'
        '<input name="csrf_token" value="' + "0" * 64 + '">'
        '<button type="submit">Win a prize</button></form>'
    )
    page.goto(cross_site(form))
    page.get_by_role("button", name="Win a prize").click()
    page.wait_for_load_state()
    items = console_server.api(console_server.admin).get("/api/items").json()["data"]
    assert [item["name"] for item in items] == []


def test_members_do_not_reach_admin_pages_or_others_rows(
    console_server, browser, page, sign_in, page_problems
):
    page_problems.allow(r"status of 404")
    member = console_server.make_user()
    other = console_server.make_user()
    todo = console_server.api(other).post("/api/todos", json={"task": "Theirs"}).json()
    sign_in(page, member.email, member.password)
    assert (
        page.get_by_role("navigation", name="Console").get_by_role("link", name="Users").count()
        == 0
    )
    assert (
        page.get_by_role("navigation", name="Console").get_by_role("link", name="Webhooks").count()
        == 0
    )
    for path in ["/console/users", "/console/webhooks", f"/console/todos/{todo['id']}"]:
        answer = page.goto(f"{console_server.url}{path}")
        assert answer is not None
        assert answer.status == 404, path
    answer = page.goto(f"{console_server.url}/console/orders/{uuid.uuid4()}")
    assert answer is not None
    assert answer.status == 404


@pytest.mark.screenshots
def test_the_overview_and_pages_pass_axe_and_load_nothing_from_elsewhere(
    app, console_server, page, sign_in, check_accessibility, screenshot
):
    api = console_server.api(console_server.admin)
    item = api.post("/api/items", json={"name": "Gasket", "quantity": 50}).json()
    for number in range(6):
        api.post("/api/orders", json={"lines": [{"item_id": item["id"], "quantity": 1}]})
        api.post("/api/webhook", json={"type": "ping", "id": f"evt-{number}"})
    eventually(
        lambda: api.get("/api/webhooks/events", params={"status": "received"}).json()["data"],
        lambda waiting: waiting == [],
    )
    with app.app_context():  # what the workers' tick does each minute, now
        activity.tally()
    sign_in(page, console_server.admin.email, console_server.admin.password)
    assert page.locator("figure.chart").count() == 4
    check_accessibility(page)
    screenshot(page, "console-overview")
    for name in ["Items", "Orders", "Todos", "Jobs", "Webhooks", "Users", "API keys"]:
        page.get_by_role("navigation", name="Console").get_by_role("link", name=name).click()
        assert page.get_by_role("heading", level=1).count() == 1
        check_accessibility(page)


def test_with_javascript_off_every_page_reads_and_forms_work(console_server, browser, sign_in):
    context = browser.new_context(
        base_url=console_server.url, viewport=VIEWPORT, java_script_enabled=False
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        sign_in(page, console_server.admin.email, console_server.admin.password)
        page.goto("/console/items/new")
        page.get_by_label("Name").fill("Made without scripts")
        page.get_by_role("button", name="Create").click()
        assert "The item was created." in page.get_by_role("status").inner_text()
    finally:
        context.close()
