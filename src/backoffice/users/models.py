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
    """The one form emails are compared in: Unicode NFKC, full case folding, NFKC again.

    Case folding (not `lower()`) makes every case variant one address. Python's `lower()`
    and PostgreSQL's disagree on Greek capital sigma at the end of a word (final or plain
    small sigma), so an address could sign up and never log in; folding maps all three
    sigmas to one. NFKC first makes a decomposed `e` + combining acute the composed `é`,
    and a compatibility character its plain counterpart: a full-width w (U+FF57) is `w`,
    the ligature fi (U+FB01) is `fi`, a superscript two is `2`. Such look-alikes would let
    a second account pass for the first; a mail server may keep them apart, but two people
    whose addresses differ only so are far less likely than someone imitating another.
    Folding can decompose again (a dotted capital I folds to `i` and a combining dot),
    hence the second NFKC. Migration 9a4c1e7b3d5f recomputed the stored forms
    (c3f8a1d6e9b2 had made them NFC).
    """
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", address).casefold())


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
