"""record a simple exchange, and read a member's balance, in one call (PostgreSQL)

``timebank_record_simple`` is the PostgreSQL side of ``timebank/ledger/server_side.py``: the
API key, the bank, the Idempotency-Key, the parties, the category, the locks in id order,
the conditional limit check, the exchange, its postings, the balances, the audit event and
the stored response, in one statement — so recording an exchange is one round trip (in
autocommit: the statement is its own transaction). It refuses exactly as the in-process
path (``timebank/ledger/record.py``) does, in the same order, with the same codes; the
state machine holds both to one model. What it does not take on (another role, an unknown,
revoked or expired key, a bank out of scope) it answers ``{"fallback": true}`` having
written nothing, and the in-process path answers instead. Refusals are raised with
SQLSTATE ``TB001`` and a JSON message: ``{"code", "detail", ...}``.

``timebank_member_balance`` is the read side: the key, the bank, the member's account and
its pending flows in one call, for ``GET …/members/{id}/balance``; it too answers
``{"fallback": true}`` for anything but the plain case (including a key due for its
``last_used_at`` touch, a write the in-process path makes).

The key's ``last_used_at`` touch (at most once a minute, as ``auth.LAST_USED_LAG``) comes
last, so the key row is locked only from there to the commit; a refused request does not
touch it (the in-process path's touch is a transaction of its own). ``recorded_at`` is
taken after the account locks are held, as the in-process path takes it.

The database still enforces SPEC §2 by itself: the zero-sum, sealed-posting and balance
checks of 0001/0002 apply to what this function writes as to any other writer.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTION = r"""
CREATE FUNCTION timebank_iso(ts timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  -- as pydantic writes a UTC datetime: microseconds only when there are some, and 'Z'
  SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
         || CASE WHEN extract(microseconds FROM ts)::bigint % 1000000 = 0 THEN ''
                 ELSE to_char(ts AT TIME ZONE 'UTC', '.US') END
         || 'Z'
$$;
--
CREATE FUNCTION timebank_refuse(code text, detail text, extra jsonb DEFAULT '{}')
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = 'TB001',
    MESSAGE = (jsonb_build_object('code', code, 'detail', detail) || extra)::text;
END $$;
--
CREATE FUNCTION timebank_invalid(field text, message text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM timebank_refuse('validation_error', field || ': ' || message,
                          jsonb_build_object('field', field, 'message', message));
END $$;
--
CREATE FUNCTION timebank_touch(key_id uuid, last_used timestamptz, now_ timestamptz)
RETURNS void LANGUAGE sql AS $$
  -- as auth's LAST_USED_LAG: at most once a minute per key
  UPDATE api_keys SET last_used_at = now_
  WHERE id = key_id AND (last_used IS NULL OR now_ - last_used > interval '1 minute')
$$;
--
CREATE FUNCTION timebank_record_simple(
  p_secret_hash text, p_slug text, p_idem_key text, p_fingerprint text, p_request_id text,
  p_exchange_id uuid,
  p_provider_type text, p_provider_id uuid, p_recipient_type text, p_recipient_id uuid,
  p_minutes integer, p_category text, p_description text, p_occurred_on date,
  p_external_ref text, p_override boolean, p_override_reason text
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  k record; tb record; rec record; cat record; acc record;
  now_ timestamptz := now();
  recorded timestamptz;
  today_ date;
  occurred date;
  labels text[] := ARRAY['provider', 'recipient'];
  types text[] := ARRAY[p_provider_type, p_recipient_type];
  ids uuid[] := ARRAY[p_provider_id, p_recipient_id];
  accs uuid[] := ARRAY[NULL, NULL]::uuid[];
  owner_types text[] := ARRAY[NULL, NULL]::text[];
  inactive text[] := ARRAY[]::text[];
  kind_ text; v_category_id uuid; category_slug text;
  deltas integer[]; afters bigint[] := ARRAY[NULL, NULL]::bigint[];
  lo bigint; hi bigint; bal bigint; delta integer; i integer;
  body text;
BEGIN
  -- the key and the bank: anything but a live admin or broker key scoped to it goes to
  -- the in-process path, which answers 401/403/404 in its own words
  SELECT * INTO k FROM api_keys WHERE secret_hash = p_secret_hash;
  IF NOT FOUND OR k.revoked_at IS NOT NULL OR (k.expires_at IS NOT NULL AND k.expires_at <= now_)
     OR k.role NOT IN ('admin', 'broker') THEN
    RETURN '{"fallback": true}';
  END IF;
  SELECT * INTO tb FROM timebanks WHERE slug = p_slug;
  IF NOT FOUND OR (k.timebank_id IS NOT NULL AND k.timebank_id <> tb.id)
     OR (k.timebank_id IS NULL AND k.role <> 'admin') THEN
    RETURN '{"fallback": true}';
  END IF;

  -- the Idempotency-Key: claimed first (a concurrent duplicate waits here, then replays)
  IF p_idem_key IS NOT NULL THEN
    INSERT INTO idempotency_keys (api_key_id, key, fingerprint, created_at)
    VALUES (k.id, p_idem_key, p_fingerprint, now_)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
      SELECT * INTO rec FROM idempotency_keys WHERE api_key_id = k.id AND key = p_idem_key;
      IF rec.fingerprint <> p_fingerprint THEN
        PERFORM timebank_refuse('idempotency_key_reused',
          'This Idempotency-Key was used with a different request');
      END IF;
      IF rec.status_code IS NULL THEN
        PERFORM timebank_refuse('idempotency_in_flight',
          'A request with this Idempotency-Key is still being processed');
      END IF;
      IF rec.response_body IS NULL THEN
        PERFORM timebank_refuse('duplicate',
          'A request with this Idempotency-Key was already carried out; its stored '
          'response was erased with a member''s personal data');
      END IF;
      PERFORM timebank_touch(k.id, k.last_used_at, now_);
      RETURN json_build_object('status', rec.status_code, 'replayed', true,
                               'body', rec.response_body)::text;
    END IF;
  END IF;

  -- validate, in the order of ledger/validate.py
  today_ := (now_ AT TIME ZONE tb.time_zone)::date;
  occurred := coalesce(p_occurred_on, today_);
  IF occurred > today_ THEN
    PERFORM timebank_invalid('occurred_on', 'is after today in this time bank''s time zone');
  END IF;
  IF occurred < date '1980-01-01' THEN
    PERFORM timebank_invalid('occurred_on', 'is before 1980-01-01');
  END IF;
  IF p_minutes > tb.max_exchange_minutes THEN
    PERFORM timebank_invalid('minutes',
      format('over this time bank''s max_exchange_minutes (%s)', tb.max_exchange_minutes));
  END IF;
  FOR i IN 1..2 LOOP
    IF types[i] = 'member' THEN
      SELECT m.account_id, m.status = 'active' AS active INTO rec
      FROM members m WHERE m.id = ids[i] AND m.timebank_id = tb.id;
      IF NOT FOUND THEN
        PERFORM timebank_invalid(labels[i], 'no such member in this time bank');
      END IF;
    ELSIF types[i] = 'organisation' THEN
      SELECT o.account_id, o.status = 'active' AS active INTO rec
      FROM organisations o WHERE o.id = ids[i] AND o.timebank_id = tb.id;
      IF NOT FOUND THEN
        PERFORM timebank_invalid(labels[i], 'no such organisation in this time bank');
      END IF;
    ELSE
      IF tb.pool_account_id IS NULL OR ids[i] IS DISTINCT FROM tb.pool_account_id THEN
        PERFORM timebank_invalid(labels[i], 'account_id must be this time bank''s pool account');
      END IF;
      SELECT tb.pool_account_id AS account_id, true AS active INTO rec;
    END IF;
    accs[i] := rec.account_id;
    owner_types[i] := CASE WHEN types[i] IN ('member', 'organisation') THEN types[i]
                           ELSE 'pool' END;
    IF NOT rec.active THEN inactive := inactive || labels[i]; END IF;
  END LOOP;
  IF accs[1] = accs[2] THEN
    PERFORM timebank_invalid('recipient', 'a party is given twice');
  END IF;
  kind_ := CASE
    WHEN owner_types[2] = 'pool' THEN 'pool_grant'
    WHEN owner_types[1] = 'pool' THEN 'pool_donation'
    WHEN owner_types[1] = 'member' AND owner_types[2] = 'member' THEN 'p2p'
    WHEN owner_types[1] = 'member' THEN 'p2o'
    WHEN owner_types[2] = 'member' THEN 'o2p'
    ELSE 'o2o' END;
  IF kind_ IN ('pool_grant', 'pool_donation') THEN
    IF p_category IS NOT NULL THEN
      PERFORM timebank_invalid('category', 'pool grants and donations have no category');
    END IF;
  ELSE
    IF p_category IS NULL THEN
      PERFORM timebank_invalid('category', 'required for a service exchange');
    END IF;
    SELECT c.id, c.slug INTO cat FROM categories c
    WHERE c.timebank_id = tb.id AND c.slug = p_category;
    IF NOT FOUND THEN
      PERFORM timebank_invalid('category', format('unknown category ''%s''', p_category));
    END IF;
    v_category_id := cat.id; category_slug := cat.slug;
  END IF;
  IF p_external_ref IS NOT NULL AND EXISTS (
       SELECT 1 FROM exchanges WHERE timebank_id = tb.id AND external_ref = p_external_ref) THEN
    PERFORM timebank_refuse('duplicate',
      format('external_ref ''%s'' was already recorded in this time bank', p_external_ref));
  END IF;
  IF cardinality(inactive) > 0 AND kind_ NOT IN ('pool_grant', 'pool_donation') THEN
    PERFORM timebank_refuse('party_inactive',
      array_to_string(inactive, ', ') || ' is not active (suspended, left or erased)');
  END IF;

  -- lock the accounts in id order, check the limits on the locked balances
  deltas := ARRAY[p_minutes, -p_minutes];
  FOR acc IN SELECT * FROM accounts WHERE id = ANY (accs) ORDER BY id FOR UPDATE LOOP
    i := CASE WHEN acc.id = accs[1] THEN 1 ELSE 2 END;
    delta := deltas[i]; bal := acc.balance_minutes;
    IF acc.custom_limits THEN
      lo := acc.min_balance_minutes; hi := acc.max_balance_minutes;
    ELSIF acc.owner_type = 'member' THEN
      lo := tb.member_min_balance_minutes; hi := tb.member_max_balance_minutes;
    ELSIF acc.owner_type = 'organisation' THEN
      lo := tb.organisation_min_balance_minutes; hi := tb.organisation_max_balance_minutes;
    ELSE
      lo := NULL; hi := NULL;
    END IF;
    IF NOT p_override AND ((delta < 0 AND lo IS NOT NULL AND bal + delta < lo)
                        OR (delta > 0 AND hi IS NOT NULL AND bal + delta > hi)) THEN
      PERFORM timebank_refuse('balance_limit_exceeded',
        format('Account %s would move further outside its limits [%s, %s] (balance %s, change %s)',
               acc.id, coalesce(lo::text, 'unbounded'), coalesce(hi::text, 'unbounded'), bal,
               CASE WHEN delta >= 0 THEN '+' ELSE '' END || delta),
        jsonb_build_object('account_id', acc.id));
    END IF;
    afters[i] := bal + delta;
  END LOOP;
  recorded := clock_timestamp();  -- after the lock wait, as the in-process path takes it

  -- insert the postings and the exchange, update the balances
  INSERT INTO postings (exchange_id, account_id, minutes, balance_after_minutes)
  VALUES (p_exchange_id, accs[1], deltas[1], afters[1]),
         (p_exchange_id, accs[2], deltas[2], afters[2]);
  BEGIN
    INSERT INTO exchanges (id, timebank_id, status, kind, minutes, category_id, occurred_on,
      recorded_at, description, external_ref, reverses, provider_account_id,
      recipient_account_id, logged_by_key_id, logged_by_role, proposed_by, decided_by,
      decided_at, override_reason, reason)
    VALUES (p_exchange_id, tb.id, 'recorded', kind_, p_minutes, v_category_id, occurred, recorded,
      p_description, p_external_ref, NULL, accs[1], accs[2], k.id, k.role, NULL, NULL,
      NULL, CASE WHEN p_override THEN p_override_reason END, NULL);
  EXCEPTION WHEN unique_violation THEN  -- a concurrent writer took the reference
    PERFORM timebank_refuse('duplicate',
      format('external_ref ''%s'' was already recorded in this time bank', p_external_ref));
  END;
  UPDATE accounts SET balance_minutes = balance_minutes + deltas[1],
                      earned_minutes = earned_minutes + deltas[1]
  WHERE id = accs[1];
  UPDATE accounts SET balance_minutes = balance_minutes + deltas[2],
                      spent_minutes = spent_minutes - deltas[2]
  WHERE id = accs[2];

  -- audit, and the response (stored for the Idempotency-Key)
  INSERT INTO audit_events (timebank_id, key_id, role, action, target_type, target_id,
                            request_id, reason, details, created_at)
  VALUES (tb.id, k.id, k.role,
          CASE WHEN p_override THEN 'exchange.override' ELSE 'exchange.record' END,
          'exchange', p_exchange_id::text, p_request_id,
          CASE WHEN p_override THEN p_override_reason END,
          json_build_object('kind', kind_, 'accounts', json_build_array(accs[1], accs[2])),
          recorded);
  body := json_build_object(
    'id', p_exchange_id, 'status', 'recorded', 'kind', kind_, 'minutes', p_minutes,
    'category', category_slug, 'occurred_on', to_char(occurred, 'YYYY-MM-DD'),
    'recorded_at', timebank_iso(recorded), 'description', p_description,
    'external_ref', p_external_ref,
    'postings', json_build_array(
      json_build_object('account_id', accs[1], 'minutes', deltas[1]),
      json_build_object('account_id', accs[2], 'minutes', deltas[2])),
    'provider_account_id', accs[1], 'recipient_account_id', accs[2],
    'reverses', NULL, 'reversed_by', NULL,
    'logged_by', json_build_object('key_id', k.id, 'role', k.role),
    'proposed_by', NULL, 'decided_by', NULL, 'decided_at', NULL, 'reason', NULL,
    'override_reason', CASE WHEN p_override THEN p_override_reason END)::text;
  IF p_idem_key IS NOT NULL THEN
    UPDATE idempotency_keys SET status_code = 201, response_body = body
    WHERE api_key_id = k.id AND key = p_idem_key;
  END IF;
  -- last: the key row is locked only from here to the commit
  PERFORM timebank_touch(k.id, k.last_used_at, now_);
  RETURN json_build_object('status', 201, 'replayed', false, 'body', body)::text;
END $$;
--
CREATE FUNCTION timebank_member_balance(p_secret_hash text, p_slug text, p_member_id uuid)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
  k record; tb record; a record;
  now_ timestamptz := now();
  lo bigint; hi bigint; pin bigint; pout bigint;
BEGIN
  -- a live key of a role that may read this member, not due for its last_used_at touch,
  -- and the bank and member as named; anything else goes to the in-process path
  SELECT * INTO k FROM api_keys WHERE secret_hash = p_secret_hash;
  IF NOT FOUND OR k.revoked_at IS NOT NULL OR (k.expires_at IS NOT NULL AND k.expires_at <= now_)
     OR k.last_used_at IS NULL OR now_ - k.last_used_at > interval '1 minute'
     OR k.role NOT IN ('admin', 'broker', 'member')
     OR (k.role = 'member' AND k.member_id IS DISTINCT FROM p_member_id) THEN
    RETURN '{"fallback": true}';
  END IF;
  SELECT * INTO tb FROM timebanks WHERE slug = p_slug;
  IF NOT FOUND OR (k.timebank_id IS NOT NULL AND k.timebank_id <> tb.id)
     OR (k.timebank_id IS NULL AND k.role <> 'admin') THEN
    RETURN '{"fallback": true}';
  END IF;
  SELECT acc.* INTO a FROM members m JOIN accounts acc ON acc.id = m.account_id
  WHERE m.id = p_member_id AND m.timebank_id = tb.id;
  IF NOT FOUND THEN
    RETURN '{"fallback": true}';
  END IF;
  IF a.custom_limits THEN
    lo := a.min_balance_minutes; hi := a.max_balance_minutes;
  ELSE
    lo := tb.member_min_balance_minutes; hi := tb.member_max_balance_minutes;
  END IF;
  -- a proposal past the bank's expiry counts as expired, stored so or not
  SELECT coalesce(sum(minutes), 0) INTO pin FROM exchanges
  WHERE provider_account_id = a.id AND status = 'pending'
    AND recorded_at >= now_ - make_interval(days => tb.pending_expiry_days);
  SELECT coalesce(sum(minutes), 0) INTO pout FROM exchanges
  WHERE recipient_account_id = a.id AND status = 'pending'
    AND recorded_at >= now_ - make_interval(days => tb.pending_expiry_days);
  RETURN json_build_object(
    'account_id', a.id, 'balance_minutes', a.balance_minutes,
    'earned_minutes', a.earned_minutes, 'spent_minutes', a.spent_minutes,
    'pending_in_minutes', pin, 'pending_out_minutes', pout,
    'min_balance_minutes', lo, 'max_balance_minutes', hi,
    'as_of', timebank_iso(clock_timestamp()))::text;
END $$;
"""

DROP = [
    "DROP FUNCTION IF EXISTS timebank_member_balance(text, text, uuid)",
    "DROP FUNCTION IF EXISTS timebank_record_simple(text, text, text, text, text, uuid, text,"
    " uuid, text, uuid, integer, text, text, date, text, boolean, text)",
    "DROP FUNCTION IF EXISTS timebank_touch(uuid, timestamptz, timestamptz)",
    "DROP FUNCTION IF EXISTS timebank_invalid(text, text)",
    "DROP FUNCTION IF EXISTS timebank_refuse(text, text, jsonb)",
    "DROP FUNCTION IF EXISTS timebank_iso(timestamptz)",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in FUNCTION.split("\n--\n"):  # one statement per execute (asyncpg)
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in DROP:
            op.execute(statement)
