"""exchange times: when an exchange was created and last changed

A partner app asks for what changed since it last looked (``updated_since=``) and sorts by
creation; ``recorded_at`` is when an exchange was recorded (a confirmed proposal's
confirmation), so the proposal's own time is kept apart. Existing rows: created at their
``recorded_at``, changed at their decision if any. Nullable on both engines (SQLite cannot
add a NOT NULL column without rebuilding the table and its triggers); the service always
sets both.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import advanced_alchemy.types.datetime
import sqlalchemy as sa

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "exchanges",
        sa.Column(
            "created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True
        ),
    )
    op.add_column(
        "exchanges",
        sa.Column(
            "updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True
        ),
    )
    op.execute(
        "UPDATE exchanges SET created_at = recorded_at, "
        "updated_at = COALESCE(decided_at, recorded_at)"
    )
    op.create_index(
        op.f("ix_exchanges_timebank_id_updated_at"), "exchanges", ["timebank_id", "updated_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_exchanges_timebank_id_updated_at"), table_name="exchanges")
    with op.batch_alter_table("exchanges", recreate="never") as batch:
        batch.drop_column("updated_at")
        batch.drop_column("created_at")
