"""partial indexes for a balance's pending flows

A balance reads the pending proposals an account provides or receives. The indexes on
``provider_account_id`` / ``recipient_account_id`` hold every simple exchange of the
account, recorded ones too, so a member with a long history made each balance read scan it
all; these partial indexes hold only the pending ones (by recording time, for the expiry
cut-off).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("status = 'pending'")
SIDES = ("provider_account_id", "recipient_account_id")


def upgrade() -> None:
    for side in SIDES:
        op.create_index(
            op.f(f"ix_exchanges_{side}_recorded_at"),
            "exchanges",
            [side, "recorded_at"],
            postgresql_where=PENDING,
            sqlite_where=PENDING,
        )


def downgrade() -> None:
    for side in SIDES:
        op.drop_index(op.f(f"ix_exchanges_{side}_recorded_at"), table_name="exchanges")
