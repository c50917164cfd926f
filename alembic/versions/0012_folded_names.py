"""folded names: the name as compared, its look-alike skeleton, and a word index

Names are compared folded (Unicode NFKC, case-folded, diacritics removed, whitespace
collapsed: "Siân Llŷr" ~ "sian llyr"), see docs/names.md. Members and organisations gain
``name_folded`` and ``name_skeleton`` beside the name, each indexed with the bank; every word
of a folded name is a row of ``name_words`` (bank, word, owner), whose key a search for word
prefixes reads as one range on both engines. Existing rows are backfilled here with the
service's own folding (``timebank.names``), so old and new names compare alike.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from timebank.names import FOLDED_LENGTH, fold, skeleton, words

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (("members", "display_name", "member"), ("organisations", "name", "organisation"))


def upgrade() -> None:
    word = sa.String(length=100)
    if op.get_bind().dialect.name == "postgresql":
        word = sa.String(length=100, collation="C")
    op.create_table(
        "name_words",
        sa.Column("timebank_id", sa.Uuid(), nullable=False),
        sa.Column("word", word, nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("owner_type", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("timebank_id", "word", "owner_id", name=op.f("pk_name_words")),
    )
    words_table = sa.table(
        "name_words",
        sa.column("timebank_id", sa.Uuid()),
        sa.column("word", sa.String()),
        sa.column("owner_id", sa.Uuid()),
        sa.column("owner_type", sa.String()),
    )
    bind = op.get_bind()
    for table, name_column, owner_type in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("name_folded", sa.String(FOLDED_LENGTH), nullable=True))
            batch.add_column(sa.Column("name_skeleton", sa.String(FOLDED_LENGTH), nullable=True))
        t = sa.table(
            table,
            sa.column("id", sa.Uuid()),
            sa.column("timebank_id", sa.Uuid()),
            sa.column(name_column, sa.String()),
            sa.column("name_folded", sa.String()),
            sa.column("name_skeleton", sa.String()),
        )
        rows = bind.execute(sa.select(t.c.id, t.c.timebank_id, t.c[name_column])).all()
        updates = [
            {
                "row_id": i,
                "folded": fold(name)[:FOLDED_LENGTH],
                "skeleton": skeleton(name)[:FOLDED_LENGTH],
            }
            for i, _, name in rows
        ]
        if updates:
            bind.execute(
                t.update()
                .where(t.c.id == sa.bindparam("row_id"))
                .values(name_folded=sa.bindparam("folded"), name_skeleton=sa.bindparam("skeleton")),
                updates,
            )
        index_rows = [
            {"timebank_id": tb, "word": w, "owner_id": i, "owner_type": owner_type}
            for i, tb, name in rows
            for w in dict.fromkeys(w[:100] for w in words(name))
        ]
        for start in range(0, len(index_rows), 5000):
            bind.execute(words_table.insert(), index_rows[start : start + 5000])
        with op.batch_alter_table(table) as batch:
            batch.alter_column(
                "name_folded", existing_type=sa.String(FOLDED_LENGTH), nullable=False
            )
            batch.alter_column(
                "name_skeleton", existing_type=sa.String(FOLDED_LENGTH), nullable=False
            )
        op.create_index(
            op.f(f"ix_{table}_timebank_id_name_folded"), table, ["timebank_id", "name_folded"]
        )
        op.create_index(
            op.f(f"ix_{table}_timebank_id_name_skeleton"), table, ["timebank_id", "name_skeleton"]
        )


def downgrade() -> None:
    for table, _, _ in reversed(TABLES):
        op.drop_index(op.f(f"ix_{table}_timebank_id_name_skeleton"), table_name=table)
        op.drop_index(op.f(f"ix_{table}_timebank_id_name_folded"), table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("name_skeleton")
            batch.drop_column("name_folded")
    op.drop_table("name_words")
