"""report rollups maintained by triggers; a cheaper deferred posting check

``activity_months`` and ``category_months`` (see ``timebank/reports/models.py``) sum the
legs of service exchanges (recorded, p2p/p2o/o2p/o2o, not reversed) by month. Triggers keep
them in step in the transaction that records an exchange (inserted as recorded, or a
proposal confirmed) and take the exchange away again when its reversal is recorded:
statement-level with transition tables on PostgreSQL (a bulk COPY is one set-based upsert),
row-level on SQLite. The
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


def _pg_apply(changed: str) -> str:
    """Statements adding the exchanges of ``changed`` (their id, timebank_id, occurred_on,
    category_id, kind, and a sign ±1) to both rollups, set-based: a COPY of many exchanges
    is one upsert per rollup."""
    legs = f"""
        SELECT c.timebank_id, date_trunc('month', c.occurred_on)::date AS month, c.category_id,
               c.kind, p.account_id, a.owner_type, c.sign,
               CASE WHEN min(CASE WHEN p.minutes > 0 THEN p.id END)
                         = min(min(CASE WHEN p.minutes > 0 THEN p.id END))
                           OVER (PARTITION BY c.id, c.sign)
                    THEN c.sign ELSE 0 END AS led,
               c.sign * sum(greatest(p.minutes, 0)) AS given,
               c.sign * sum(greatest(-p.minutes, 0)) AS received
        FROM ({changed}) AS c
        JOIN postings p ON p.exchange_id = c.id
        JOIN accounts a ON a.id = p.account_id
        GROUP BY c.timebank_id, c.occurred_on, c.category_id, c.kind, c.id, p.account_id,
                 a.owner_type, c.sign"""
    sums = """sum(l.sign), sum(l.led), sum(l.given), sum(l.received)"""
    update = """exchanges = r.exchanges + EXCLUDED.exchanges,
            led = r.led + EXCLUDED.led,
            given_minutes = r.given_minutes + EXCLUDED.given_minutes,
            received_minutes = r.received_minutes + EXCLUDED.received_minutes"""
    undone = f"""SELECT p.account_id FROM ({changed}) AS c
                 JOIN postings p ON p.exchange_id = c.id WHERE c.sign < 0"""
    return f"""
        INSERT INTO activity_months AS r (timebank_id, month, account_id, owner_type, exchanges,
                                          led, given_minutes, received_minutes)
        SELECT l.timebank_id, l.month, l.account_id, l.owner_type, {sums}
        FROM ({legs}) AS l
        GROUP BY l.timebank_id, l.month, l.account_id, l.owner_type
        ON CONFLICT (timebank_id, month, account_id) DO UPDATE SET {update};
        INSERT INTO category_months AS r (timebank_id, month, category_id, kind, account_id,
                                          owner_type, exchanges, led, given_minutes,
                                          received_minutes)
        SELECT l.timebank_id, l.month, l.category_id, l.kind, l.account_id, l.owner_type, {sums}
        FROM ({legs}) AS l
        GROUP BY l.timebank_id, l.month, l.category_id, l.kind, l.account_id, l.owner_type
        ON CONFLICT (timebank_id, month, category_id, kind, account_id) DO UPDATE SET {update};
        DELETE FROM activity_months WHERE exchanges = 0 AND account_id IN ({undone});
        DELETE FROM category_months WHERE exchanges = 0 AND account_id IN ({undone});
    """


_COLUMNS = "id, timebank_id, occurred_on, category_id, kind"
_RECORDED_NOW = f"""
    SELECT {_COLUMNS}, 1 AS sign FROM new_rows
    WHERE status = 'recorded' AND kind IN {SERVICE}
    UNION ALL
    SELECT o.id, o.timebank_id, o.occurred_on, o.category_id, o.kind, -1
    FROM new_rows n JOIN exchanges o ON o.id = n.reverses
    WHERE n.status = 'recorded' AND n.kind = 'reversal'
      AND o.status = 'recorded' AND o.kind IN {SERVICE}"""
_CONFIRMED_NOW = f"""
    SELECT n.id, n.timebank_id, n.occurred_on, n.category_id, n.kind, 1 AS sign
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE o.status = 'pending' AND n.status = 'recorded' AND n.kind IN {SERVICE}"""

_PG = [
    f"""
    CREATE FUNCTION tb_exchanges_rollup_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {_pg_apply(_RECORDED_NOW)}
        RETURN NULL;
    END $$
    """,
    f"""
    CREATE FUNCTION tb_exchanges_rollup_update() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {_pg_apply(_CONFIRMED_NOW)}
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER exchanges_rollup AFTER INSERT ON exchanges
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION tb_exchanges_rollup_insert()
    """,
    """
    CREATE TRIGGER exchanges_rollup_confirm AFTER UPDATE ON exchanges
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION tb_exchanges_rollup_update()
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
    "DROP FUNCTION IF EXISTS tb_exchanges_rollup_update()",
    "DROP FUNCTION IF EXISTS tb_exchanges_rollup_insert()",
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
