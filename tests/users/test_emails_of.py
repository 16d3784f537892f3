"""`users.service.emails_of`: a page's owners in one query (the console's job list)."""

from __future__ import annotations

import uuid

from backoffice.users import service as users


def test_the_email_of_each_user_and_nothing_for_an_unknown_id(app, make_user):
    first, second = make_user(), make_user(role="admin")
    with app.app_context():
        found = users.emails_of([first.id, second.id, first.id, uuid.uuid4()])
        assert found == {first.id: first.email, second.id: second.email}
        assert users.emails_of([]) == {}
