"""users: one canonical email (NFC, case-folded) that sign-up, login and the index compare

Sign-up's unique index compared PostgreSQL's `lower(email)` and login compared Python's
`lower()`, and the two disagree (`ΣΑΣ`: `σασ` in PostgreSQL, `σας` in Python), so some
people could sign up and never log in. users gains `email_canonical`, computed here in
Python exactly as the app computes it (`backoffice.users.models.canonical_email`, copied
so this revision never changes), and a plain unique index on it replaces the expression
index. Every row is kept and `email` is untouched.

Two existing rows whose emails are the same in canonical form (`Straße@x.org` and
`strasse@x.org`) cannot both keep a unique one: the upgrade then stops before changing
anything and names them, to be merged or changed by hand first.

Revision ID: c3f8a1d6e9b2
Revises: a1e7c3b9d2f4
Create Date: 2026-11-22 04:00:00.000000

"""

import unicodedata
from collections import defaultdict

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "c3f8a1d6e9b2"
down_revision = "a1e7c3b9d2f4"
branch_labels = None
depends_on = None

users = sa.table(
    "users",
    sa.column("id", sa.Uuid()),
    sa.column("email", sa.String()),
    sa.column("email_canonical", sa.String()),
)


def canonical_email(address):
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", address).casefold())


def canonical_emails(connection):
    """{user id: canonical email}, or a RuntimeError naming every clash."""
    by_canonical = defaultdict(list)
    for user_id, email in connection.execute(sa.select(users.c.id, users.c.email)):
        by_canonical[canonical_email(email)].append((user_id, email))
    clashes = {canonical: rows for canonical, rows in by_canonical.items() if len(rows) > 1}
    if clashes:
        named = "; ".join(
            f"{canonical!r} <- "
            + ", ".join(f"{email!r} (user {user_id})" for user_id, email in rows)
            for canonical, rows in sorted(clashes.items())
        )
        raise RuntimeError(
            f"users: {len(clashes)} canonical email(s) would belong to more than one user: "
            f"{named}. Nothing was changed. Merge those users or change their emails, then "
            "upgrade again."
        )
    return {rows[0][0]: canonical for canonical, rows in by_canonical.items()}


def upgrade():
    connection = op.get_bind()
    canonical = canonical_emails(connection)  # before any change: a clash changes nothing
    # SQLite adds a NOT NULL column only with a default (and keeps it: dropping one would
    # rebuild the table, which cascades deletes into every table that references users).
    op.add_column(
        "users",
        sa.Column("email_canonical", sa.String(length=960), nullable=False, server_default=""),
    )
    if canonical:
        connection.execute(
            users.update()
            .where(users.c.id == sa.bindparam("user_id"))
            .values(email_canonical=sa.bindparam("canonical")),
            [{"user_id": user_id, "canonical": email} for user_id, email in canonical.items()],
        )
    if connection.dialect.name != "sqlite":
        op.alter_column("users", "email_canonical", server_default=None)
    op.drop_index("uq_users_email_lower", table_name="users")
    op.create_index("uq_users_email_canonical", "users", ["email_canonical"], unique=True)


def downgrade():
    op.drop_index("uq_users_email_canonical", table_name="users")
    op.create_index("uq_users_email_lower", "users", [sa.text("lower(email)")], unique=True)
    op.drop_column("users", "email_canonical")
