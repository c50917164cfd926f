"""evidence: the hash chain, the Merkle tree's nodes, signed checkpoints

Written only by the sealer, after the ledger's own commits (docs/evidence.md). The database
keeps the evidence append-only — entries, nodes and checkpoints refuse UPDATE and DELETE —
and each bank's chain gapless: an entry's ``seq`` must be one more than the bank's last.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from advanced_alchemy.types.datetime import DateTimeUTC

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = ("evidence_entries", "evidence_nodes", "evidence_checkpoints")

PG = [
    """
    CREATE FUNCTION tb_evidence_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'restrict_violation';
    END $$
    """,
    *(
        f"CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
        "FOR EACH ROW EXECUTE FUNCTION tb_evidence_append_only()"
        for t in APPEND_ONLY
    ),
    """
    CREATE FUNCTION tb_evidence_gapless() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.seq <> COALESCE((SELECT max(seq) FROM evidence_entries
                                WHERE timebank_id = NEW.timebank_id), 0) + 1 THEN
            RAISE EXCEPTION 'evidence entry % of bank % would leave a gap', NEW.seq,
                NEW.timebank_id USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END $$
    """,
    "CREATE TRIGGER evidence_entries_gapless BEFORE INSERT ON evidence_entries "
    "FOR EACH ROW EXECUTE FUNCTION tb_evidence_gapless()",
]
SQLITE = [
    *(
        f"CREATE TRIGGER {t}_no_{op_.lower()} BEFORE {op_} ON {t} "
        f"BEGIN SELECT RAISE(ABORT, '{t} is append-only ({op_} refused)'); END"
        for t in APPEND_ONLY
        for op_ in ("UPDATE", "DELETE")
    ),
    """
    CREATE TRIGGER evidence_entries_gapless BEFORE INSERT ON evidence_entries
    WHEN NEW.seq <> COALESCE((SELECT max(seq) FROM evidence_entries
                              WHERE timebank_id = NEW.timebank_id), 0) + 1
    BEGIN SELECT RAISE(ABORT, 'evidence entry would leave a gap'); END
    """,
]


def upgrade() -> None:
    op.create_table(
        "evidence_entries",
        sa.Column("timebank_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("exchange_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("leaf", sa.Text(), nullable=False),
        sa.Column("chain_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("sealed_at", DateTimeUTC(timezone=True), nullable=False),
        sa.CheckConstraint("seq >= 1", name=op.f("ck_evidence_entries_seq_positive")),
        sa.ForeignKeyConstraint(
            ["timebank_id"],
            ["timebanks.id"],
            name=op.f("fk_evidence_entries_timebank_id_timebanks"),
        ),
        sa.PrimaryKeyConstraint("timebank_id", "seq", name=op.f("pk_evidence_entries")),
    )
    op.create_index(op.f("ix_evidence_entries_exchange_id"), "evidence_entries", ["exchange_id"])
    op.create_table(
        "evidence_nodes",
        sa.Column("timebank_id", sa.Uuid(), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["timebank_id"], ["timebanks.id"], name=op.f("fk_evidence_nodes_timebank_id_timebanks")
        ),
        sa.PrimaryKeyConstraint("timebank_id", "level", "idx", name=op.f("pk_evidence_nodes")),
    )
    op.create_table(
        "evidence_checkpoints",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("timebank_id", sa.Uuid(), nullable=False),
        sa.Column(
            "tree_size", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("chain_head", sa.LargeBinary(length=32), nullable=False),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("key_name", sa.String(length=100), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["timebank_id"],
            ["timebanks.id"],
            name=op.f("fk_evidence_checkpoints_timebank_id_timebanks"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence_checkpoints")),
    )
    op.create_index(
        op.f("ix_evidence_checkpoints_timebank_id_tree_size_created_at"),
        "evidence_checkpoints",
        ["timebank_id", "tree_size", "created_at"],
    )
    op.create_table(
        "evidence_open",
        sa.Column("exchange_id", sa.Uuid(), nullable=False),
        sa.Column("timebank_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["timebank_id"], ["timebanks.id"], name=op.f("fk_evidence_open_timebank_id_timebanks")
        ),
        sa.PrimaryKeyConstraint("exchange_id", name=op.f("pk_evidence_open")),
    )
    op.create_index(op.f("ix_evidence_open_timebank_id"), "evidence_open", ["timebank_id"])
    for sql in PG if op.get_bind().dialect.name == "postgresql" else SQLITE:
        op.execute(sql)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for t in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {t}_append_only ON {t}")
        op.execute("DROP TRIGGER IF EXISTS evidence_entries_gapless ON evidence_entries")
        op.execute("DROP FUNCTION IF EXISTS tb_evidence_append_only()")
        op.execute("DROP FUNCTION IF EXISTS tb_evidence_gapless()")
    op.drop_index(op.f("ix_evidence_open_timebank_id"), table_name="evidence_open")
    op.drop_table("evidence_open")
    op.drop_index(
        op.f("ix_evidence_checkpoints_timebank_id_tree_size_created_at"),
        table_name="evidence_checkpoints",
    )
    op.drop_table("evidence_checkpoints")
    op.drop_table("evidence_nodes")
    op.drop_index(op.f("ix_evidence_entries_exchange_id"), table_name="evidence_entries")
    op.drop_table("evidence_entries")
