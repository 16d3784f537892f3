"""c3f8a1d6e9b2 gives every user a canonical email: every row kept, and two rows that
would be the same account stop the upgrade before it changes anything."""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import flask_migrate
import pytest
import sqlalchemy as sa
from alembic import command

from backoffice.database import UTCDateTime
from backoffice.extensions import db
from backoffice.users.models import User
from backoffice.users.passwords import hash_password
from tests.support import PASSWORD

BEFORE = "a1e7c3b9d2f4"
#: The users table as the revision before left it.
OLD_USERS = sa.Table(
    "users",
    sa.MetaData(),
    sa.Column("id", sa.Uuid()),
    sa.Column("name", sa.String(200)),
    sa.Column("email", sa.String(320)),
    sa.Column("password_hash", sa.String(255)),
    sa.Column("role", sa.String(16)),
    sa.Column("active", sa.Boolean()),
    sa.Column("token_generation", sa.Integer()),
    sa.Column("created_at", UTCDateTime()),
    sa.Column("updated_at", UTCDateTime()),
)


@pytest.fixture
def before(app) -> Iterator[None]:
    """The database one revision back (empty), upgraded again whatever the test does."""
    with app.app_context():
        flask_migrate.downgrade(revision=BEFORE)
        try:
            yield
        finally:
            db.session.remove()
            with db.engine.begin() as connection:  # no clash left to stop the upgrade
                connection.execute(sa.text("DELETE FROM users"))
            flask_migrate.upgrade()


def insert_old_users(app, *emails: str) -> list[uuid.UUID]:
    now = datetime.now(UTC)
    ids = [uuid.uuid4() for _ in emails]
    with app.app_context(), db.engine.begin() as connection:
        for user_id, email in zip(ids, emails, strict=True):
            connection.execute(
                OLD_USERS.insert().values(
                    id=user_id,
                    name="Old User",
                    email=email,
                    password_hash=hash_password(PASSWORD),
                    role="member",
                    active=True,
                    token_generation=0,
                    created_at=now,
                    updated_at=now,
                )
            )
    return ids


def test_every_user_is_kept_with_a_canonical_email_and_logs_in_as_typed(app, before, anonymous):
    emails = ["\u03a3\u0391\u03a3@example.com", "Ada@example.com", "jos\u00e9@example.com"]
    ids = insert_old_users(app, *emails)
    with app.app_context():
        flask_migrate.upgrade()
        users = {user.id: user for user in db.session.scalars(sa.select(User))}
        assert {user_id: users[user_id].email for user_id in ids} == dict(
            zip(ids, emails, strict=True)
        )
        assert [users[user_id].email_canonical for user_id in ids] == [
            "\u03c3\u03b1\u03c3@example.com",
            "ada@example.com",
            "jos\u00e9@example.com",
        ]
        indexes = {index["name"]: index for index in sa.inspect(db.engine).get_indexes("users")}
        assert indexes["uq_users_email_canonical"]["unique"]
        assert "uq_users_email_lower" not in indexes
    for typed in [
        "\u03a3\u0391\u03a3@example.com",
        "\u03c3\u03b1\u03c2@example.com",
        "ADA@example.com",
    ]:
        response = anonymous.post("/api/auth/token", json={"email": typed, "password": PASSWORD})
        assert response.status_code == 200, (typed, response.json)


def test_two_users_with_one_canonical_email_stop_the_upgrade_and_change_nothing(app, before):
    """`lower()` kept these apart; case folding makes them one address. Nothing is merged
    silently: the upgrade fails naming both (`flask db upgrade` prints it and exits 1),
    and leaves the database as it was."""
    ids = insert_old_users(app, "Stra\u00dfe@example.de", "strasse@example.de", "ok@example.com")
    with app.app_context():
        with pytest.raises(RuntimeError) as failure:
            command.upgrade(app.extensions["migrate"].migrate.get_config(), "head")
        message = str(failure.value)
        assert "'strasse@example.de'" in message
        assert str(ids[0]) in message
        assert str(ids[1]) in message
        assert "Nothing was changed" in message
        db.session.remove()
        with db.engine.connect() as connection:
            version = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
            assert version.scalar() == BEFORE
            assert "email_canonical" not in {
                column["name"] for column in sa.inspect(connection).get_columns("users")
            }
            emails = connection.execute(sa.select(OLD_USERS.c.email)).scalars().all()
            assert sorted(emails) == [
                "Stra\u00dfe@example.de",
                "ok@example.com",
                "strasse@example.de",
            ]
        # Once one of them is changed by hand, the upgrade goes through.
        with db.engine.begin() as connection:
            connection.execute(
                OLD_USERS.update()
                .where(OLD_USERS.c.id == ids[1])
                .values(email="strasse.2@example.de")
            )
        flask_migrate.upgrade()
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 3


#: The revision before 9a4c1e7b3d5f, which recomputes the canonical emails with NFKC.
BEFORE_NFKC = "f2b8d4c6a1e3"
USERS_WITH_CANONICAL = sa.Table(
    "users",
    sa.MetaData(),
    sa.Column("id", sa.Uuid()),
    sa.Column("name", sa.String(200)),
    sa.Column("email", sa.String(320)),
    sa.Column("email_canonical", sa.String(960)),
    sa.Column("password_hash", sa.String(255)),
    sa.Column("role", sa.String(16)),
    sa.Column("active", sa.Boolean()),
    sa.Column("token_generation", sa.Integer()),
    sa.Column("created_at", UTCDateTime()),
    sa.Column("updated_at", UTCDateTime()),
)


def nfc_canonical(address: str) -> str:
    """The canonical form c3f8a1d6e9b2 stored: NFC and case folding, no NFKC."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", address).casefold())


@pytest.fixture
def before_nfkc(app) -> Iterator[None]:
    """The database at the revision before NFKC (empty), upgraded again afterwards."""
    with app.app_context():
        flask_migrate.downgrade(revision=BEFORE_NFKC)
        try:
            yield
        finally:
            db.session.remove()
            with db.engine.begin() as connection:
                connection.execute(sa.text("DELETE FROM users"))
            flask_migrate.upgrade()


def insert_nfc_users(app, *emails: str) -> list[uuid.UUID]:
    now = datetime.now(UTC)
    ids = [uuid.uuid4() for _ in emails]
    with app.app_context(), db.engine.begin() as connection:
        for user_id, email in zip(ids, emails, strict=True):
            connection.execute(
                USERS_WITH_CANONICAL.insert().values(
                    id=user_id,
                    name="Old User",
                    email=email,
                    email_canonical=nfc_canonical(email),
                    password_hash=hash_password(PASSWORD),
                    role="member",
                    active=True,
                    token_generation=0,
                    created_at=now,
                    updated_at=now,
                )
            )
    return ids


def test_nfkc_recomputes_every_canonical_email_and_keeps_the_address(app, before_nfkc, anonymous):
    emails = ["\uff57x@example.com", "\ufb01le@example.com", "Ada@example.com"]
    ids = insert_nfc_users(app, *emails)
    with app.app_context():
        flask_migrate.upgrade()
        users = {user.id: user for user in db.session.scalars(sa.select(User))}
        assert [users[user_id].email for user_id in ids] == emails
        assert [users[user_id].email_canonical for user_id in ids] == [
            "wx@example.com",
            "file@example.com",
            "ada@example.com",
        ]
    for typed in ["wx@example.com", "\uff37X@example.com", "file@example.com"]:
        response = anonymous.post("/api/auth/token", json={"email": typed, "password": PASSWORD})
        assert response.status_code == 200, (typed, response.json)


def test_two_users_one_nfkc_email_stop_the_upgrade_and_change_nothing(app, before_nfkc):
    """NFC kept a full-width `wx@` and a plain one apart; NFKC makes them one address.
    Nothing is merged silently: the upgrade fails naming both and leaves the database as
    it was."""
    ids = insert_nfc_users(app, "wx@example.com", "\uff57x@example.com", "ok@example.com")
    with app.app_context():
        with pytest.raises(RuntimeError) as failure:
            command.upgrade(app.extensions["migrate"].migrate.get_config(), "head")
        message = str(failure.value)
        assert "'wx@example.com' <- " in message
        assert str(ids[0]) in message
        assert str(ids[1]) in message
        assert "Nothing was changed" in message
        db.session.remove()
        with db.engine.connect() as connection:
            version = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
            assert version.scalar() == BEFORE_NFKC
            stored = connection.execute(
                sa.select(USERS_WITH_CANONICAL.c.email, USERS_WITH_CANONICAL.c.email_canonical)
            ).all()
            assert sorted(stored) == sorted(
                (email, nfc_canonical(email))
                for email in ["wx@example.com", "\uff57x@example.com", "ok@example.com"]
            )
