"""categories: a Welsh name beside the English one, and retiring

Coordinators add, rename and retire categories in the console. A retired category stays on
the exchanges that used it (history is never rewritten) but is not offered or accepted for
new ones. Each category may have its name in Welsh, shown on Welsh pages.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import advanced_alchemy
import sqlalchemy as sa

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("categories") as batch:
        batch.add_column(sa.Column("name_cy", sa.String(length=100), nullable=True))
        batch.add_column(
            sa.Column(
                "retired_at",
                advanced_alchemy.types.datetime.DateTimeUTC(timezone=True),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("categories") as batch:
        batch.drop_column("retired_at")
        batch.drop_column("name_cy")
