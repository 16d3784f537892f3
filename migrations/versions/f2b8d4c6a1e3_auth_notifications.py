"""auth notifications: PostgreSQL tells every process when a credential may have ended

Triggers `pg_notify('backoffice_auth', ...)` on every change that can end or narrow a
token or an API key, so each server process can keep the answers to its authentication
queries in memory and evict them when told (backoffice.auth.token_states):

- users: `active`, `role` or `token_generation` changed, or the row deleted: `user:<id>`;
- api_keys: any change but its use (`last_used_at`, `updated_at`), or deleted:
  `key:<prefix>`;
- revoked_tokens: a token or family revoked: `revoked:<jti>` (`revoked:family:<id>`);
- any of them truncated: `all`.

Triggers see every path (the ORM, Core, an operator's psql), and PostgreSQL delivers a
notification only when its transaction commits. SQLite has no NOTIFY, and the cache is
off there: nothing to do.

Revision ID: f2b8d4c6a1e3
Revises: 5ebf033aba3e
Create Date: 2026-11-22 06:45:00.000000

"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "f2b8d4c6a1e3"
down_revision = "5ebf033aba3e"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE FUNCTION backoffice_auth_user_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('backoffice_auth', 'user:' || OLD.id);
    RETURN NULL;
END $$;

CREATE FUNCTION backoffice_auth_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('backoffice_auth', 'key:' || OLD.prefix);
    IF TG_OP = 'UPDATE' AND NEW.prefix IS DISTINCT FROM OLD.prefix THEN
        PERFORM pg_notify('backoffice_auth', 'key:' || NEW.prefix);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION backoffice_auth_token_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('backoffice_auth', 'revoked:' || NEW.jti);
    RETURN NULL;
END $$;

CREATE FUNCTION backoffice_auth_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('backoffice_auth', 'all');
    RETURN NULL;
END $$;

CREATE TRIGGER backoffice_auth_user_updated AFTER UPDATE ON users FOR EACH ROW
    WHEN (OLD.active IS DISTINCT FROM NEW.active
          OR OLD.role IS DISTINCT FROM NEW.role
          OR OLD.token_generation IS DISTINCT FROM NEW.token_generation
          OR OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION backoffice_auth_user_changed();
CREATE TRIGGER backoffice_auth_user_deleted AFTER DELETE ON users FOR EACH ROW
    EXECUTE FUNCTION backoffice_auth_user_changed();

CREATE TRIGGER backoffice_auth_key_updated AFTER UPDATE ON api_keys FOR EACH ROW
    WHEN ((to_jsonb(OLD) - 'last_used_at' - 'updated_at')
          IS DISTINCT FROM (to_jsonb(NEW) - 'last_used_at' - 'updated_at'))
    EXECUTE FUNCTION backoffice_auth_key_changed();
CREATE TRIGGER backoffice_auth_key_deleted AFTER DELETE ON api_keys FOR EACH ROW
    EXECUTE FUNCTION backoffice_auth_key_changed();

CREATE TRIGGER backoffice_auth_token_revoked AFTER INSERT ON revoked_tokens FOR EACH ROW
    EXECUTE FUNCTION backoffice_auth_token_revoked();

CREATE TRIGGER backoffice_auth_users_truncated AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION backoffice_auth_truncated();
CREATE TRIGGER backoffice_auth_api_keys_truncated AFTER TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION backoffice_auth_truncated();
"""

DOWNGRADE = """
DROP TRIGGER backoffice_auth_api_keys_truncated ON api_keys;
DROP TRIGGER backoffice_auth_users_truncated ON users;
DROP TRIGGER backoffice_auth_token_revoked ON revoked_tokens;
DROP TRIGGER backoffice_auth_key_deleted ON api_keys;
DROP TRIGGER backoffice_auth_key_updated ON api_keys;
DROP TRIGGER backoffice_auth_user_deleted ON users;
DROP TRIGGER backoffice_auth_user_updated ON users;
DROP FUNCTION backoffice_auth_truncated();
DROP FUNCTION backoffice_auth_token_revoked();
DROP FUNCTION backoffice_auth_key_changed();
DROP FUNCTION backoffice_auth_user_changed();
"""


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(UPGRADE)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(DOWNGRADE)
