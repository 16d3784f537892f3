from __future__ import annotations

import unicodedata
from enum import StrEnum

from sqlalchemy import CheckConstraint, Index, String
from sqlalchemy.orm import Mapped, mapped_column, validates

from backoffice.database import Base, ResourceMixin


class Role(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


def canonical_email(address: str) -> str:
    """The one form emails are compared in: Unicode NFC, full case folding, NFC again.

    Case folding (not `lower()`) makes every case variant one address. Python's `lower()`
    and PostgreSQL's disagree on Greek capital sigma at the end of a word (final or plain
    small sigma), so an address could sign up and never log in; folding maps all three
    sigmas to one. NFC first makes a decomposed `e` + combining acute the composed `é`;
    folding can decompose again (a dotted capital I folds to `i` and a combining dot),
    hence the second NFC. Compatibility forms (NFKC) are not merged: they are different
    characters a mail server may keep apart.
    """
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", address).casefold())


class User(ResourceMixin, Base):
    """A person. `token_generation` is bumped to void every token issued so far.

    `email` is the address as given (validated, its domain normalised); `email_canonical`
    is what sign-up, login and the unique index compare, set whenever `email` is.
    """

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    #: Case folding can triple a character's length (`ΐ` folds to three code points).
    email_canonical: Mapped[str] = mapped_column(String(960))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.MEMBER)
    active: Mapped[bool] = mapped_column(default=True)
    token_generation: Mapped[int] = mapped_column(default=0)

    __table_args__ = (
        Index("uq_users_email_canonical", email_canonical, unique=True),
        CheckConstraint("role IN ('admin', 'member')", name="role_known"),
    )

    @validates("email")
    def _canonicalise(self, _key: str, address: str) -> str:
        self.email_canonical = canonical_email(address)
        return address
