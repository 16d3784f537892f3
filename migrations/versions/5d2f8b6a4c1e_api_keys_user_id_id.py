"""api_keys: one index on (user_id, id) for the owner's keyset pages

`GET /api/auth/api-keys` is paginated like every other list (`WHERE user_id = ? AND id <
? ORDER BY id DESC LIMIT n`), and the bound on live keys per person counts by user_id:
(user_id, id) serves both, as todos, jobs and chat usage have it, and replaces the index
on user_id alone. The table is small (a few keys per person), so a plain CREATE INDEX.

Revision ID: 5d2f8b6a4c1e
Revises: 9a4c1e7b3d5f
Create Date: 2026-12-04 23:30:00.000000

"""

from alembic import op


# revision identifiers, used by Alembic.
revision = "5d2f8b6a4c1e"
down_revision = "9a4c1e7b3d5f"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_api_keys_user_id_id", "api_keys", ["user_id", "id"], unique=False)
    op.drop_index("ix_api_keys_user_id", table_name="api_keys")


def downgrade():
    op.create_index("ix_api_keys_user_id", "api_keys", ["user_id"], unique=False)
    op.drop_index("ix_api_keys_user_id_id", table_name="api_keys")
