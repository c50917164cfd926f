"""paper time sheets: uploaded sheets (previews) and organisations' external_ref

An uploaded sheet is kept with its resolved lines so any worker can show it again or commit
it (SPEC §3.10); organisations get an optional reference unique in their bank, so a sheet
can name them by it (§7.7).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from advanced_alchemy.types.datetime import DateTimeUTC

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("organisations") as batch:
        batch.add_column(sa.Column("external_ref", sa.String(length=200), nullable=True))
        batch.create_unique_constraint(
            op.f("uq_organisations_timebank_id_external_ref"), ["timebank_id", "external_ref"]
        )
    op.create_table(
        "sheet_imports",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("timebank_id", sa.Uuid(), nullable=False),
        sa.Column("sheet", sa.String(length=100), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "preview",
                "committed",
                "discarded",
                name="import_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("created_by_key_id", sa.Uuid(), nullable=True),
        sa.Column("created_by_role", sa.String(length=20), nullable=False),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("committed_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("atomic", sa.Boolean(), nullable=True),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["timebank_id"],
            ["timebanks.id"],
            name=op.f("fk_sheet_imports_timebank_id_timebanks"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sheet_imports")),
    )
    op.create_index(
        op.f("ix_sheet_imports_timebank_id_created_at"),
        "sheet_imports",
        ["timebank_id", "created_at"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_sheet_imports_timebank_id_created_at"), table_name="sheet_imports")
    op.drop_table("sheet_imports")
    with op.batch_alter_table("organisations") as batch:
        batch.drop_constraint(op.f("uq_organisations_timebank_id_external_ref"), type_="unique")
        batch.drop_column("external_ref")
