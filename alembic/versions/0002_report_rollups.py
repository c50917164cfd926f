"""report rollups maintained by triggers; a cheaper deferred posting check

``activity_months`` and ``category_months`` (see ``timebank/reports/models.py``) sum the
legs of service exchanges (recorded, p2p/p2o/o2p/o2o, not reversed) by month. Triggers keep
them in step in the transaction that records an exchange (inserted as recorded, or a
proposal confirmed) and take the exchange away again when its reversal is recorded. The
upgrade fills them from the existing ledger. An index on exchanges (timebank, kind, day)
serves the reports' pool figures.

On PostgreSQL the deferred ``postings_balanced`` check now skips postings whose exchange is
recorded: ``exchanges_balanced`` checks every exchange that becomes recorded in the
transaction, and ``postings_sealed`` refuses postings on one recorded before. Only postings
left on a non-recorded exchange still need the full check.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE = "('p2p', 'p2o', 'o2p', 'o2o')"
OWNER_TYPES = ("member", "organisation", "pool")
KINDS = ("p2p", "p2o", "o2p", "o2o", "pool_grant", "pool_donation", "reversal")


def _enum(name: str, values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=32)


def upgrade() -> None:
    op.create_table(
        "activity_months",
        sa.Column("timebank_id", sa.Uuid(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("owner_type", _enum("owner_type", OWNER_TYPES), nullable=False),
        sa.Column("exchanges", sa.Integer(), nullable=False),
        sa.Column("led", sa.Integer(), nullable=False),
        sa.Column("given_minutes", sa.Integer(), nullable=False),
        sa.Column("received_minutes", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_activity_months_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["timebank_id"],
            ["timebanks.id"],
            name=op.f("fk_activity_months_timebank_id_timebanks"),
        ),
        sa.PrimaryKeyConstraint(
            "timebank_id", "month", "account_id", name=op.f("pk_activity_months")
        ),
    )
    op.create_table(
        "category_months",
        sa.Column("timebank_id", sa.Uuid(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("category_id", sa.Uuid(), nullable=False),
        sa.Column("kind", _enum("exchange_kind", KINDS), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("owner_type", _enum("owner_type", OWNER_TYPES), nullable=False),
        sa.Column("exchanges", sa.Integer(), nullable=False),
        sa.Column("led", sa.Integer(), nullable=False),
        sa.Column("given_minutes", sa.Integer(), nullable=False),
        sa.Column("received_minutes", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_category_months_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["categories.id"],
            name=op.f("fk_category_months_category_id_categories"),
        ),
        sa.ForeignKeyConstraint(
            ["timebank_id"],
            ["timebanks.id"],
            name=op.f("fk_category_months_timebank_id_timebanks"),
        ),
        sa.PrimaryKeyConstraint(
            "timebank_id",
            "month",
            "category_id",
            "kind",
            "account_id",
            name=op.f("pk_category_months"),
        ),
    )
    op.create_index(
        op.f("ix_exchanges_timebank_id_kind_occurred_on"),
        "exchanges",
        ["timebank_id", "kind", "occurred_on"],
    )
    pg = op.get_bind().dialect.name == "postgresql"
    for sql in _PG if pg else _SQLITE:
        op.execute(sql)
    month = (
        "date_trunc('month', e.occurred_on)::date"
        if pg
        else "date(e.occurred_on, 'start of month')"
    )
    counted = f"""e.status = 'recorded' AND e.kind IN {SERVICE}
        AND NOT EXISTS (SELECT 1 FROM exchanges r WHERE r.reverses = e.id)"""
    op.execute(
        f"""
        INSERT INTO activity_months (timebank_id, month, account_id, owner_type, exchanges,
                                     led, given_minutes, received_minutes)
        SELECT e.timebank_id, {month}, p.account_id, a.owner_type, count(DISTINCT e.id),
               sum(CASE WHEN p.id = (SELECT min(f.id) FROM postings f
                                     WHERE f.exchange_id = e.id AND f.minutes > 0)
                        THEN 1 ELSE 0 END),
               sum(CASE WHEN p.minutes > 0 THEN p.minutes ELSE 0 END),
               sum(CASE WHEN p.minutes < 0 THEN -p.minutes ELSE 0 END)
        FROM exchanges e
        JOIN postings p ON p.exchange_id = e.id
        JOIN accounts a ON a.id = p.account_id
        WHERE {counted}
        GROUP BY e.timebank_id, {month}, p.account_id, a.owner_type
        """
    )
    op.execute(
        f"""
        INSERT INTO category_months (timebank_id, month, category_id, kind, account_id,
                                     owner_type, exchanges, led, given_minutes, received_minutes)
        SELECT e.timebank_id, {month}, e.category_id, e.kind, p.account_id, a.owner_type,
               count(DISTINCT e.id),
               sum(CASE WHEN p.id = (SELECT min(f.id) FROM postings f
                                     WHERE f.exchange_id = e.id AND f.minutes > 0)
                        THEN 1 ELSE 0 END),
               sum(CASE WHEN p.minutes > 0 THEN p.minutes ELSE 0 END),
               sum(CASE WHEN p.minutes < 0 THEN -p.minutes ELSE 0 END)
        FROM exchanges e
        JOIN postings p ON p.exchange_id = e.id
        JOIN accounts a ON a.id = p.account_id
        WHERE {counted}
        GROUP BY e.timebank_id, {month}, e.category_id, e.kind, p.account_id, a.owner_type
        """
    )


def downgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    for sql in _PG_DROP if pg else _SQLITE_DROP:
        op.execute(sql)
    op.drop_index(op.f("ix_exchanges_timebank_id_kind_occurred_on"), table_name="exchanges")
    op.drop_table("category_months")
    op.drop_table("activity_months")


# --- PostgreSQL ---------------------------------------------------------------------------

_PG = [
    """
    CREATE FUNCTION tb_rollup(ex exchanges, sign integer) RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        m date := date_trunc('month', ex.occurred_on)::date;
    BEGIN
        INSERT INTO activity_months AS r (timebank_id, month, account_id, owner_type, exchanges,
                                          led, given_minutes, received_minutes)
        SELECT ex.timebank_id, m, c.account_id, c.owner_type, sign,
               CASE WHEN c.first_id = min(c.first_id) OVER () THEN sign ELSE 0 END,
               sign * c.given, sign * c.received
        FROM (SELECT p.account_id, a.owner_type,
                     min(CASE WHEN p.minutes > 0 THEN p.id END) AS first_id,
                     sum(greatest(p.minutes, 0)) AS given, sum(greatest(-p.minutes, 0)) AS received
              FROM postings p JOIN accounts a ON a.id = p.account_id
              WHERE p.exchange_id = ex.id
              GROUP BY p.account_id, a.owner_type) AS c
        ON CONFLICT (timebank_id, month, account_id) DO UPDATE SET
            exchanges = r.exchanges + EXCLUDED.exchanges,
            led = r.led + EXCLUDED.led,
            given_minutes = r.given_minutes + EXCLUDED.given_minutes,
            received_minutes = r.received_minutes + EXCLUDED.received_minutes;
        INSERT INTO category_months AS r (timebank_id, month, category_id, kind, account_id,
                                          owner_type, exchanges, led, given_minutes,
                                          received_minutes)
        SELECT ex.timebank_id, m, ex.category_id, ex.kind, c.account_id, c.owner_type, sign,
               CASE WHEN c.first_id = min(c.first_id) OVER () THEN sign ELSE 0 END,
               sign * c.given, sign * c.received
        FROM (SELECT p.account_id, a.owner_type,
                     min(CASE WHEN p.minutes > 0 THEN p.id END) AS first_id,
                     sum(greatest(p.minutes, 0)) AS given, sum(greatest(-p.minutes, 0)) AS received
              FROM postings p JOIN accounts a ON a.id = p.account_id
              WHERE p.exchange_id = ex.id
              GROUP BY p.account_id, a.owner_type) AS c
        ON CONFLICT (timebank_id, month, category_id, kind, account_id) DO UPDATE SET
            exchanges = r.exchanges + EXCLUDED.exchanges,
            led = r.led + EXCLUDED.led,
            given_minutes = r.given_minutes + EXCLUDED.given_minutes,
            received_minutes = r.received_minutes + EXCLUDED.received_minutes;
        IF sign < 0 THEN
            DELETE FROM activity_months
            WHERE timebank_id = ex.timebank_id AND month = m AND exchanges = 0
              AND account_id IN (SELECT account_id FROM postings WHERE exchange_id = ex.id);
            DELETE FROM category_months
            WHERE timebank_id = ex.timebank_id AND month = m AND category_id = ex.category_id
              AND kind = ex.kind AND exchanges = 0
              AND account_id IN (SELECT account_id FROM postings WHERE exchange_id = ex.id);
        END IF;
    END $$
    """,
    f"""
    CREATE FUNCTION tb_exchanges_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        original exchanges;
    BEGIN
        IF NEW.status <> 'recorded' THEN
            RETURN NULL;
        END IF;
        IF NEW.kind IN {SERVICE} THEN
            PERFORM tb_rollup(NEW, 1);
        ELSIF NEW.kind = 'reversal' AND NEW.reverses IS NOT NULL THEN
            SELECT * INTO original FROM exchanges WHERE id = NEW.reverses;
            IF original.status = 'recorded' AND original.kind IN {SERVICE} THEN
                PERFORM tb_rollup(original, -1);
            END IF;
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER exchanges_rollup AFTER INSERT ON exchanges
        FOR EACH ROW EXECUTE FUNCTION tb_exchanges_rollup()
    """,
    """
    CREATE TRIGGER exchanges_rollup_confirm AFTER UPDATE OF status ON exchanges
        FOR EACH ROW WHEN (OLD.status = 'pending' AND NEW.status = 'recorded')
        EXECUTE FUNCTION tb_exchanges_rollup()
    """,
    """
    CREATE OR REPLACE FUNCTION tb_postings_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (SELECT 1 FROM exchanges WHERE id = NEW.exchange_id AND status = 'recorded')
        THEN
            RETURN NULL;  -- checked by exchanges_balanced
        END IF;
        PERFORM tb_check_exchange_balanced(NEW.exchange_id);
        RETURN NULL;
    END $$
    """,
]

_PG_DROP = [
    """
    CREATE OR REPLACE FUNCTION tb_postings_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM tb_check_exchange_balanced(NEW.exchange_id);
        RETURN NULL;
    END $$
    """,
    "DROP TRIGGER IF EXISTS exchanges_rollup_confirm ON exchanges",
    "DROP TRIGGER IF EXISTS exchanges_rollup ON exchanges",
    "DROP FUNCTION IF EXISTS tb_exchanges_rollup()",
    "DROP FUNCTION IF EXISTS tb_rollup(exchanges, integer)",
]

# --- SQLite -------------------------------------------------------------------------------


def _sqlite_add(ex: str, sign: str, where: str) -> list[str]:
    """Upserts adding ``sign`` × exchange ``ex`` (a row alias) to both rollups."""
    month = f"date({ex}.occurred_on, 'start of month')"
    return [
        f"""
        INSERT INTO activity_months (timebank_id, month, account_id, owner_type, exchanges,
                                     led, given_minutes, received_minutes)
        SELECT {ex}.timebank_id, {month}, p.account_id, a.owner_type, {sign},
               CASE WHEN min(CASE WHEN p.minutes > 0 THEN p.id END)
                         = (SELECT min(f.id) FROM postings f
                            WHERE f.exchange_id = {ex}.id AND f.minutes > 0)
                    THEN {sign} ELSE 0 END,
               {sign} * sum(max(p.minutes, 0)), {sign} * sum(max(-p.minutes, 0))
        FROM exchanges {ex} JOIN postings p ON p.exchange_id = {ex}.id
        JOIN accounts a ON a.id = p.account_id
        WHERE {where}
        GROUP BY p.account_id, a.owner_type
        ON CONFLICT (timebank_id, month, account_id) DO UPDATE SET
            exchanges = exchanges + excluded.exchanges,
            led = led + excluded.led,
            given_minutes = given_minutes + excluded.given_minutes,
            received_minutes = received_minutes + excluded.received_minutes;
        """,
        f"""
        INSERT INTO category_months (timebank_id, month, category_id, kind, account_id,
                                     owner_type, exchanges, led, given_minutes,
                                     received_minutes)
        SELECT {ex}.timebank_id, {month}, {ex}.category_id, {ex}.kind, p.account_id,
               a.owner_type, {sign},
               CASE WHEN min(CASE WHEN p.minutes > 0 THEN p.id END)
                         = (SELECT min(f.id) FROM postings f
                            WHERE f.exchange_id = {ex}.id AND f.minutes > 0)
                    THEN {sign} ELSE 0 END,
               {sign} * sum(max(p.minutes, 0)), {sign} * sum(max(-p.minutes, 0))
        FROM exchanges {ex} JOIN postings p ON p.exchange_id = {ex}.id
        JOIN accounts a ON a.id = p.account_id
        WHERE {where}
        GROUP BY p.account_id, a.owner_type
        ON CONFLICT (timebank_id, month, category_id, kind, account_id) DO UPDATE SET
            exchanges = exchanges + excluded.exchanges,
            led = led + excluded.led,
            given_minutes = given_minutes + excluded.given_minutes,
            received_minutes = received_minutes + excluded.received_minutes;
        """,
    ]


_SQLITE_ADD = "".join(_sqlite_add("x", "1", "x.id = NEW.id"))
_SQLITE_TAKE = "".join(
    _sqlite_add("x", "-1", f"x.id = NEW.reverses AND x.status = 'recorded' AND x.kind IN {SERVICE}")
)
_SQLITE = [
    f"""
    CREATE TRIGGER exchanges_rollup_insert AFTER INSERT ON exchanges
    WHEN NEW.status = 'recorded' AND NEW.kind IN {SERVICE}
    BEGIN {_SQLITE_ADD} END
    """,
    f"""
    CREATE TRIGGER exchanges_rollup_confirm AFTER UPDATE OF status ON exchanges
    WHEN OLD.status = 'pending' AND NEW.status = 'recorded' AND NEW.kind IN {SERVICE}
    BEGIN {_SQLITE_ADD} END
    """,
    f"""
    CREATE TRIGGER exchanges_rollup_reversal AFTER INSERT ON exchanges
    WHEN NEW.status = 'recorded' AND NEW.kind = 'reversal' AND NEW.reverses IS NOT NULL
    BEGIN {_SQLITE_TAKE}
        DELETE FROM activity_months WHERE exchanges = 0
            AND account_id IN (SELECT account_id FROM postings WHERE exchange_id = NEW.reverses);
        DELETE FROM category_months WHERE exchanges = 0
            AND account_id IN (SELECT account_id FROM postings WHERE exchange_id = NEW.reverses);
    END
    """,
]

_SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS exchanges_rollup_reversal",
    "DROP TRIGGER IF EXISTS exchanges_rollup_confirm",
    "DROP TRIGGER IF EXISTS exchanges_rollup_insert",
]
