"""users: the canonical email folds compatibility characters (NFKC) as well as case

`ｗx@example.com` (a full-width w) and `wx@example.com` were two accounts: the canonical
form was NFC and case folding, which keeps compatibility characters (full-width letters,
ligatures such as `ﬁ`, superscripts) apart. They look alike to a person, so one could
pass for the other; the canonical form is now NFKC, case folding, NFKC again
(`backoffice.users.models.canonical_email`, copied here so this revision never changes).
This recomputes `email_canonical` for every row; `email`, the address as given, is
untouched, and nothing else changes.

Two existing rows whose emails become one canonical address cannot both keep the unique
index: the upgrade then stops before changing anything and names them, to be merged or
changed by hand first (as c3f8a1d6e9b2 does). The downgrade goes back to the NFC form,
which can never clash where this one did not (it tells fewer addresses apart).

Revision ID: 9a4c1e7b3d5f
Revises: f2b8d4c6a1e3
Create Date: 2026-12-04 23:00:00.000000

"""

import unicodedata
from collections import defaultdict

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "9a4c1e7b3d5f"
down_revision = "f2b8d4c6a1e3"
branch_labels = None
depends_on = None

users = sa.table(
    "users",
    sa.column("id", sa.Uuid()),
    sa.column("email", sa.String()),
    sa.column("email_canonical", sa.String()),
)


def nfkc_canonical(address):
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", address).casefold())


def nfc_canonical(address):
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", address).casefold())


def recompute(connection, canonical_email):
    """Set every row's `email_canonical` to `canonical_email(email)`, or raise a
    RuntimeError naming every clash before changing anything."""
    rows = connection.execute(sa.select(users.c.id, users.c.email, users.c.email_canonical))
    by_canonical = defaultdict(list)
    changed = []
    for user_id, email, stored in rows:
        canonical = canonical_email(email)
        by_canonical[canonical].append((user_id, email))
        if canonical != stored:
            changed.append({"user_id": user_id, "canonical": canonical})
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
    if changed:
        connection.execute(
            users.update()
            .where(users.c.id == sa.bindparam("user_id"))
            .values(email_canonical=sa.bindparam("canonical")),
            changed,
        )


def upgrade():
    recompute(op.get_bind(), nfkc_canonical)


def downgrade():
    recompute(op.get_bind(), nfc_canonical)
