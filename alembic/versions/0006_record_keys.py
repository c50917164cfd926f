"""record keys for the cell-key method of published report figures

Every member, organisation and exchange gets a permanent random 32-bit ``record_key``
(SPEC §7.4): a report cell's key is the sum of its records' keys mod 2³², and a fixed
table turns (cell value, cell key) into the published value, so the same cell always
publishes the same value. Existing rows are backfilled with random keys; new rows get one
from the database's default (PostgreSQL: also the COPY and ``timebank_record_simple``
paths) or from the models (SQLite). Keys are kept on erasure and never serialised.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("members", "organisations", "exchanges")
KEY_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# volatile: PostgreSQL evaluates it for every existing row when the column is added
PG_DEFAULT = sa.text("(floor(random() * 4294967296))::bigint")
SQLITE_RANDOM = "(abs(random()) % 4294967296)"


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table in TABLES:
        if postgresql:
            op.add_column(
                table,
                sa.Column("record_key", KEY_TYPE, nullable=False, server_default=PG_DEFAULT),
            )
        else:
            # SQLite cannot add a column with an expression default: backfill, and the
            # models give every new row its key
            op.add_column(
                table,
                sa.Column("record_key", KEY_TYPE, nullable=False, server_default=sa.text("0")),
            )
            op.execute(f"UPDATE {table} SET record_key = {SQLITE_RANDOM}")


def downgrade() -> None:
    for table in TABLES:
        op.drop_column(table, "record_key")
