"""Items in the console: the API's rules for a valid item, the same If-Match rule as a
version carried by the form, data shown as text."""

from __future__ import annotations

import html
import re
import uuid

from sqlalchemy import select

from backoffice.extensions import db
from backoffice.items.models import Item
from tests.support import count_rows

XSS = '<img src=x onerror="alert(1)">'


def _item(in_db, item_id: str) -> Item | None:
    return in_db(lambda: db.session.scalar(select(Item).where(Item.id == uuid.UUID(item_id))))


def test_create_stores_the_item_and_shows_it(console_as, member, in_db):
    console = console_as(member)
    answer = console.post(
        "/console/items", {"name": "  Hex bolt ", "description": "M6", "quantity": "40"}
    )
    assert answer.status_code == 303
    item_id = answer.headers["Location"].split("/")[-1].split("?")[0]
    item = _item(in_db, item_id)
    assert (item.name, item.description, item.quantity) == ("Hex bolt", "M6", 40)
    page = console.get(answer.headers["Location"])
    assert "The item was created." in page.text
    assert 'value="Hex bolt"' in page.text


def test_a_bad_form_is_422_naming_the_field_and_stores_nothing(console_as, member, in_db):
    console = console_as(member)
    answer = console.post("/console/items", {"name": "", "quantity": "-3"})
    assert answer.status_code == 422
    assert 'aria-invalid="true" aria-describedby="e-name"' in answer.text
    assert 'aria-describedby="e-quantity"' in answer.text
    assert in_db(lambda: count_rows(Item)) == 0


def test_names_and_searches_are_shown_as_text(console_as, member):
    console = console_as(member)
    console.post("/console/items", {"name": XSS, "quantity": "1"})
    listing = console.get("/console/items", query_string={"q": "<img"})
    assert XSS not in listing.text
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in listing.text


def test_low_stock_is_marked_and_pages_follow_the_cursor(console_as, member):
    console = console_as(member)
    for number in range(30):
        console.post("/console/items", {"name": f"Part {number:02}", "quantity": str(number)})
    first = console.get("/console/items")
    assert first.text.count("<tr>") == 26  # the header and 25 rows, newest first
    assert "Part 29" in first.text
    assert "Part 04" not in first.text
    next_page = re.search(r'<a href="([^"]+)" rel="next">', first.text)
    assert next_page is not None
    second = console.get(html.unescape(next_page.group(1)))
    assert "Part 04" in second.text
    assert second.text.count(">low<") == 5  # 0 to 4 units
    assert 'rel="next"' not in second.text


def test_an_edit_that_lost_a_race_says_so_and_changes_nothing(console_as, member, client, in_db):
    console = console_as(member)
    created = console.post("/console/items", {"name": "Washer", "quantity": "10"})
    item_url = created.headers["Location"].split("?")[0]
    item_id = item_url.split("/")[-1]
    console.get(item_url)  # the form holds version 1
    other = client.patch(f"/api/items/{item_id}", json={"quantity": 7})
    assert other.status_code == 200
    answer = console.post(
        item_url, {"name": "Washer", "quantity": "12", "description": "", "version": "1"}
    )
    assert answer.status_code == 409
    assert "Someone else changed this item" in answer.text
    assert "<dd>7</dd>" in answer.text  # the current value
    assert 'value="12"' in answer.text  # and what was typed
    assert 'name="version" value="2"' in answer.text  # saving again overwrites knowingly
    assert _item(in_db, item_id).quantity == 7


def test_save_and_delete_with_the_current_version(console_as, member, in_db):
    console = console_as(member)
    item_url = (
        console.post("/console/items", {"name": "Nut", "quantity": "1"})
        .headers["Location"]
        .split("?")[0]
    )
    saved = console.post(
        item_url, {"name": "Nut M6", "quantity": "2", "description": "zinc", "version": "1"}
    )
    assert saved.status_code == 303
    assert _item(in_db, item_url.split("/")[-1]).name == "Nut M6"
    stale_delete = console.post(f"{item_url}/delete", {"version": "1"})
    assert stale_delete.status_code == 409
    deleted = console.post(f"{item_url}/delete", {"version": "2"})
    assert deleted.status_code == 303
    assert deleted.headers["Location"] == "/console/items?done=deleted"
    assert in_db(lambda: count_rows(Item)) == 0


def test_a_missing_item_is_a_404_page(console_as, member):
    answer = console_as(member).get(f"/console/items/{uuid.uuid4()}")
    assert answer.status_code == 404
    assert "was not found" in answer.text
    assert answer.mimetype == "text/html"
