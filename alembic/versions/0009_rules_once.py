"""rules once: PostgreSQL records an exchange, and reads a balance, with rules in Python

``timebank_record_simple`` and ``timebank_member_balance`` (0003) held a PL/pgSQL copy of
the ledger's rules (keys, scope, validation, limits, pending expiry) beside the Python ones
(SPEC §7.6). They are dropped, with their helpers: on PostgreSQL recording now reads the
facts in one statement, judges them with the same Python as the in-process path, and
writes in one statement (``timebank/ledger/fast.py``) whose guards are generic — each
balance kept inside the range the Python limit rule allows; a balance is one read of facts
judged in Python. ``timebank_assert`` is how that statement stops
itself when a guard fails: it raises SQLSTATE ``TB002`` and the whole statement rolls back.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ASSERT = """
CREATE FUNCTION timebank_assert(ok boolean, what text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  IF ok IS NOT TRUE THEN
    RAISE EXCEPTION USING ERRCODE = 'TB002', MESSAGE = 'guard failed: ' || what;
  END IF;
  RETURN true;
END $$
"""
OLD_LOGGED_BY = "json_build_object('key_id', k.id, 'role', k.role)"
NEW_LOGGED_BY = "json_build_object('key_id', k.id, 'user_id', NULL, 'role', k.role)"
DROPPED = (
    "timebank_record_simple",
    "timebank_member_balance",
    "timebank_touch",
    "timebank_invalid",
    "timebank_refuse",
    "timebank_iso",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "DROP FUNCTION timebank_record_simple(text, text, text, text, text, uuid, text, uuid,"
        " text, uuid, integer, text, text, date, text, boolean, text)"
    )
    op.execute("DROP FUNCTION timebank_touch(uuid, timestamptz, timestamptz)")
    op.execute("DROP FUNCTION timebank_invalid(text, text)")
    op.execute("DROP FUNCTION timebank_refuse(text, text, jsonb)")
    op.execute("DROP FUNCTION timebank_member_balance(text, text, uuid)")
    op.execute("DROP FUNCTION timebank_iso(timestamptz)")
    op.execute(ASSERT)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION timebank_assert(boolean, text)")
    path = Path(__file__).with_name("0003_record_in_one_call.py")
    spec = importlib.util.spec_from_file_location("revision_0003", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for statement in module.FUNCTION.split("\n--\n"):
        if any(f"CREATE FUNCTION {name}(" in statement for name in DROPPED):
            # as 0007 left it: ``logged_by`` with its ``user_id``
            op.execute(statement.replace(OLD_LOGGED_BY, NEW_LOGGED_BY))
