"""Extensions, created unbound here and bound to an app in `create_app()` (Flask-Migrate:
`backoffice.schema_migrations`)."""

from __future__ import annotations

from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_sqlalchemy import SQLAlchemy

from backoffice.database import Base, RequestSession

db = SQLAlchemy(
    model_class=Base,
    session_options={"class_": RequestSession, "expire_on_commit": False},
)
jwt = JWTManager()
#: No default limits: only views that declare one are limited (chat); login and sign-up
#: reserve their attempts through its storage (`backoffice.attempts`).
limiter = Limiter(key_func=get_remote_address)
