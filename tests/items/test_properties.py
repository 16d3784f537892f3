"""Property-based checks (Hypothesis) of the cursor and the item validation rules."""

from __future__ import annotations

import unicodedata
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from backoffice.extensions import db
from backoffice.items.models import Item
from backoffice.pagination import decode_cursor, encode_cursor

#: What the API trims: Unicode's White_Space property (str.strip() also takes \x1c-\x1f).
UNICODE_WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000"
)

#: Format characters that are drawn (the prepended concatenation marks: U+0600 shows).
DRAWN_FORMAT = {*map(chr, range(0x0600, 0x0606)), "\u06dd", "\u070f", "\u0890", "\u0891"}
DRAWN_FORMAT |= {"\u08e2", "\U000110bd", "\U000110cd"}
#: Letters and symbols that are drawn as nothing: Hangul fillers, the blank braille pattern.
BLANK = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800"}
#: Code points reserved as default-ignorable (or as hieroglyph format controls): unassigned
#: here, they will never be drawn. Other unassigned ones count as visible (a newer emoji).
RESERVED_INVISIBLE = [(0x2065, 0x2065), (0xFFF0, 0xFFF8), (0x13430, 0x1343F), (0xE0000, 0xE0FFF)]
BIDI_CONTROLS = {*map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))}


def shows(char: str) -> bool:
    """A person sees something: letters, numbers, punctuation, symbols, private-use and
    unassigned characters do, but for the few above; controls, format characters, white
    space and combining marks (alone) do not."""
    if char in BLANK or any(low <= ord(char) <= high for low, high in RESERVED_INVISIBLE):
        return False
    category = unicodedata.category(char)
    return category[0] in "LNPS" or category in ("Co", "Cn") or char in DRAWN_FORMAT


PROPERTY_SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _reset(app) -> None:
    with app.app_context():
        db.session.execute(delete(Item))
        db.session.commit()


@PROPERTY_SETTINGS
@given(total=st.integers(min_value=0, max_value=40), limit=st.integers(min_value=1, max_value=15))
def test_walking_the_cursor_visits_every_item_once_newest_first(app, client, total, limit):
    _reset(app)
    created = [client.post("/api/items", json={"name": f"n{n}"}).json["id"] for n in range(total)]
    seen: list[str] = []
    url = f"/api/items?limit={limit}"
    pages = 0
    while url:
        body = client.get(url).json
        assert len(body["data"]) <= limit
        seen += [item["id"] for item in body["data"]]
        pages += 1
        url = (
            f"/api/items?limit={limit}&cursor={body['next_cursor']}" if body["next_cursor"] else ""
        )
    assert seen == created[::-1]
    assert pages == max(1, -(-total // limit))


@PROPERTY_SETTINGS
@given(cursor=st.text(min_size=1, max_size=80))
def test_any_string_that_is_not_our_cursor_is_a_400_never_a_500(app, client, cursor):
    response = client.get("/api/items", query_string={"cursor": cursor})
    assert response.status_code == 400


@given(last=st.uuids())
def test_cursor_round_trips_and_does_not_reveal_the_raw_id_layout(app, last):
    with app.test_request_context():
        cursor = encode_cursor("items", last)
        assert decode_cursor("items", cursor) == last
        assert str(last) not in cursor


@PROPERTY_SETTINGS
@given(name=st.text(max_size=220), quantity=st.integers(min_value=-(2**40), max_value=2**40))
def test_create_accepts_exactly_the_valid_items(app, client, name, quantity):
    _reset(app)
    trimmed = name.strip(UNICODE_WHITE_SPACE)
    controls = any(unicodedata.category(char) == "Cc" for char in trimmed)
    hidden = not any(shows(char) for char in trimmed) or bool(BIDI_CONTROLS & set(trimmed))
    valid_name = 1 <= len(trimmed) <= 200 and not controls and not hidden
    valid_quantity = 0 <= quantity <= 2_147_483_647
    response = client.post("/api/items", json={"name": name, "quantity": quantity})
    with app.app_context():
        stored = db.session.scalar(select(func.count()).select_from(Item))
    if valid_name and valid_quantity:
        assert response.status_code == 201, response.json
        assert response.json["name"] == trimmed
        assert stored == 1
        with app.app_context():
            item = db.session.get(Item, uuid.UUID(response.json["id"]))
            assert item is not None
            assert (item.name, item.quantity) == (trimmed, quantity)
    else:
        assert response.status_code == 422
        fields = {error["field"] for error in response.json["errors"]}
        expected = {
            field for field, ok in (("name", valid_name), ("quantity", valid_quantity)) if not ok
        }
        assert fields == expected
        assert stored == 0
