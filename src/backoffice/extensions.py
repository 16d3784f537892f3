"""Extensions, created unbound here and bound to an app in `create_app()`."""

from __future__ import annotations

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from backoffice.database import Base, RequestSession

db = SQLAlchemy(
    model_class=Base,
    session_options={"class_": RequestSession, "expire_on_commit": False},
)
migrate = Migrate()
