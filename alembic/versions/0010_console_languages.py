"""console languages: a console user's chosen language and a time bank's default

The console speaks English and Welsh (issue 17): the language a user picks with the switch
is kept on their row, and an admin may set the language of their bank's console for users
who have not picked one. Both are nullable (not chosen: the next rule decides).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("console_users") as batch:
        batch.add_column(sa.Column("language", sa.String(length=16), nullable=True))
    with op.batch_alter_table("timebanks") as batch:
        batch.add_column(sa.Column("default_language", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("timebanks") as batch:
        batch.drop_column("default_language")
    with op.batch_alter_table("console_users") as batch:
        batch.drop_column("language")
