"""the zero-sum check of new recorded exchanges runs once per statement (PostgreSQL)

0001's ``exchanges_balanced`` was a deferred constraint trigger run for every exchange row
at commit: a batch of a thousand ran it a thousand times. It is replaced by statement-level
triggers (AFTER INSERT, AFTER UPDATE, with the new rows as a transition table) that check,
in one query each, that every exchange the statement made recorded has at least two
postings summing to zero, and that no other exchange it wrote has postings.

The guarantee is the same. The deferred check allowed a recorded exchange's postings to be
added later in the transaction; ``postings_sealed`` (0001) already refuses any posting on an
exchange that is not pending, so the postings of a recorded exchange are all there when its
row is written, and none can follow (postings are append-only; a recorded exchange never
changes status). ``postings_balanced`` (deferred, per posting) stays: postings are written
before their exchange row, so only at commit can it be known that theirs became recorded.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = [
    """
    CREATE FUNCTION tb_exchanges_balanced_set() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        bad record;
    BEGIN
        SELECT n.id, count(p.id) AS lines, coalesce(sum(p.minutes), 0) AS total INTO bad
            FROM new_rows n LEFT JOIN postings p ON p.exchange_id = n.id
            WHERE n.status = 'recorded'
            GROUP BY n.id
            HAVING count(p.id) < 2 OR coalesce(sum(p.minutes), 0) <> 0
            LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'exchange % is unbalanced: % lines summing to %',
                bad.id, bad.lines, bad.total USING ERRCODE = 'check_violation';
        END IF;
        SELECT n.id INTO bad FROM new_rows n
            WHERE n.status <> 'recorded'
              AND EXISTS (SELECT 1 FROM postings p WHERE p.exchange_id = n.id)
            LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'exchange % has postings but is not recorded', bad.id
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER exchanges_balanced_insert AFTER INSERT ON exchanges
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION tb_exchanges_balanced_set()
    """,
    """
    CREATE TRIGGER exchanges_balanced_update AFTER UPDATE ON exchanges
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION tb_exchanges_balanced_set()
    """,
    "DROP TRIGGER exchanges_balanced ON exchanges",
]

DOWNGRADE = [
    """
    CREATE CONSTRAINT TRIGGER exchanges_balanced AFTER INSERT OR UPDATE OF status ON exchanges
        DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION tb_exchanges_balanced()
    """,
    "DROP TRIGGER IF EXISTS exchanges_balanced_update ON exchanges",
    "DROP TRIGGER IF EXISTS exchanges_balanced_insert ON exchanges",
    "DROP FUNCTION IF EXISTS tb_exchanges_balanced_set()",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in UPGRADE:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in DOWNGRADE:
            op.execute(statement)
