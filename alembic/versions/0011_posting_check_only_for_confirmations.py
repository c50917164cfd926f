"""the commit-time zero-sum check only for postings added to a proposal

Until now ``postings_balanced`` (0001, 0002) was a deferred constraint trigger queued for
**every** posting and run at commit — two per exchange, two thousand per batch — though it
had something to find only for a posting added to an *existing* pending exchange (a
proposal being confirmed) whose exchange then stayed pending. Every other case is already
caught per statement or at insert: an exchange written as recorded must have at least two
postings summing to zero, and one written otherwise none (0004, statement-level, in the
statement that writes it); no posting may be added to an exchange that is no longer
pending (``postings_sealed``); and a posting's exchange must exist at commit (the deferred
foreign key).

So ``postings_sealed``, which already looks the exchange up for each posting, now also
marks the posting ``onto_pending`` when that exchange exists (a confirmation), and the
deferred check is queued only ``WHEN (NEW.onto_pending)``: recording an exchange, a
batch, a reversal or a starting grant queue nothing, a confirmation queues its own two.
The guarantee is unchanged; the mark is the database's (the trigger sets it whatever an
INSERT says; postings are append-only). SQLite keeps its immediate row triggers and only
gains the column.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEALED = """
CREATE OR REPLACE FUNCTION tb_postings_sealed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    st text;
BEGIN
    SELECT status INTO st FROM exchanges WHERE id = NEW.exchange_id;
    IF FOUND AND st <> 'pending' THEN
        RAISE EXCEPTION 'exchange % is sealed: no postings may be added', NEW.exchange_id
            USING ERRCODE = 'restrict_violation';
    END IF;
    -- a posting added to an existing proposal (a confirmation): checked again at commit
    NEW.onto_pending := FOUND;
    RETURN NEW;
END $$
"""
BALANCED = """
CREATE OR REPLACE FUNCTION tb_postings_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tb_check_exchange_balanced(NEW.exchange_id);
    RETURN NULL;
END $$
"""
TRIGGER = """
CREATE CONSTRAINT TRIGGER postings_balanced AFTER INSERT ON postings
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.onto_pending) EXECUTE FUNCTION tb_postings_balanced()
"""
OLD_SEALED = """
CREATE OR REPLACE FUNCTION tb_postings_sealed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM exchanges WHERE id = NEW.exchange_id AND status <> 'pending') THEN
        RAISE EXCEPTION 'exchange % is sealed: no postings may be added', NEW.exchange_id
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$
"""
OLD_BALANCED = """
CREATE OR REPLACE FUNCTION tb_postings_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM exchanges WHERE id = NEW.exchange_id AND status = 'recorded')
    THEN
        RETURN NULL;  -- checked by exchanges_balanced
    END IF;
    PERFORM tb_check_exchange_balanced(NEW.exchange_id);
    RETURN NULL;
END $$
"""
OLD_TRIGGER = """
CREATE CONSTRAINT TRIGGER postings_balanced AFTER INSERT ON postings
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION tb_postings_balanced()
"""


def upgrade() -> None:
    op.add_column(
        "postings",
        sa.Column("onto_pending", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(SEALED)
        op.execute(BALANCED)
        op.execute("DROP TRIGGER postings_balanced ON postings")
        op.execute(TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER postings_balanced ON postings")
        op.execute(OLD_TRIGGER)
        op.execute(OLD_BALANCED)
        op.execute(OLD_SEALED)
    # not a batch (SQLite would rebuild the table and lose its triggers): SQLite ≥ 3.35
    # drops a column in place
    op.execute("ALTER TABLE postings DROP COLUMN onto_pending")
