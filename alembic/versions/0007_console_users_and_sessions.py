"""console users and sessions; who acted is a key or a console user

The console (SPEC §3.9): people sign in with an email and a password (argon2id hash), hold a
role in one or several time banks (``console_user_timebanks``; an admin with none is a global
admin), and get a session stored in the database (a token's SHA-256, revocable at once).
Refused sign-ins are counted in ``console_sign_in_failures`` to throttle guessing per account
and per address across workers.

Who acted (SPEC §7.2) is a key or a console user: ``exchanges.logged_by_user_id`` and
``audit_events.user_id`` beside the key ids. Idempotency records stay keyed by
``api_key_id``, which holds the principal's id (a key's or a user's; both are UUIDv7s).

The PostgreSQL one-call path (0003) serves API keys only; its response now says
``"user_id": null`` in ``logged_by`` as the in-process path does.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import advanced_alchemy
import sqlalchemy as sa

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_LOGGED_BY = "json_build_object('key_id', k.id, 'role', k.role)"
NEW_LOGGED_BY = "json_build_object('key_id', k.id, 'user_id', NULL, 'role', k.role)"


def _record_simple(logged_by: str) -> str:
    """0003's ``timebank_record_simple``, with its ``logged_by`` as given."""
    path = Path(__file__).with_name("0003_record_in_one_call.py")
    spec = importlib.util.spec_from_file_location("timebank_migration_0003", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (statement,) = [
        s for s in module.FUNCTION.split("\n--\n") if "FUNCTION timebank_record_simple(" in s
    ]
    assert OLD_LOGGED_BY in statement
    return statement.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1).replace(
        OLD_LOGGED_BY, logged_by
    )


def _utc(name: str, nullable: bool) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        name, advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=nullable
    )


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "admin",
                "broker",
                "member",
                "funder",
                name="role",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        _utc("disabled_at", True),
        _utc("created_at", False),
        _utc("password_changed_at", False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_users")),
        sa.UniqueConstraint("email", name=op.f("uq_console_users_email")),
    )
    op.create_table(
        "console_user_timebanks",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("timebank_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["timebank_id"],
            ["timebanks.id"],
            name=op.f("fk_console_user_timebanks_timebank_id_timebanks"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["console_users.id"],
            name=op.f("fk_console_user_timebanks_user_id_console_users"),
        ),
        sa.PrimaryKeyConstraint("user_id", "timebank_id", name=op.f("pk_console_user_timebanks")),
    )
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        _utc("created_at", False),
        _utc("last_seen_at", False),
        _utc("revoked_at", True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["console_users.id"],
            name=op.f("fk_console_sessions_user_id_console_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_console_sessions_token_hash")),
    )
    op.create_index(
        op.f("ix_console_sessions_user_id"), "console_sessions", ["user_id"], unique=False
    )
    op.create_table(
        "console_sign_in_failures",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        _utc("at", False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_sign_in_failures")),
    )
    op.create_index(
        op.f("ix_console_sign_in_failures_email_at"),
        "console_sign_in_failures",
        ["email", "at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_console_sign_in_failures_address_at"),
        "console_sign_in_failures",
        ["address", "at"],
        unique=False,
    )
    # plain ALTER TABLE on both engines: a batch copy would drop SQLite's ledger triggers
    op.add_column("exchanges", sa.Column("logged_by_user_id", sa.Uuid(), nullable=True))
    op.add_column("audit_events", sa.Column("user_id", sa.Uuid(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_record_simple(NEW_LOGGED_BY))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_record_simple(OLD_LOGGED_BY))
    op.execute("ALTER TABLE audit_events DROP COLUMN user_id")
    op.execute("ALTER TABLE exchanges DROP COLUMN logged_by_user_id")
    op.drop_index(
        op.f("ix_console_sign_in_failures_address_at"), table_name="console_sign_in_failures"
    )
    op.drop_index(
        op.f("ix_console_sign_in_failures_email_at"), table_name="console_sign_in_failures"
    )
    op.drop_table("console_sign_in_failures")
    op.drop_index(op.f("ix_console_sessions_user_id"), table_name="console_sessions")
    op.drop_table("console_sessions")
    op.drop_table("console_user_timebanks")
    op.drop_table("console_users")
