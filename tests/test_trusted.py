"""``bodies.trusted`` builds the same response models as ``model_construct`` (the views of
exchanges, postings and balances), for a fraction of the cost."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from timebank.access import Role
from timebank.bodies import trusted
from timebank.ledger.models import ExchangeKind, ExchangeStatus
from timebank.ledger.schemas import BalanceOut, ExchangeOut, LoggedBy, PostingOut


def test_trusted_is_model_construct_for_every_view() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    now = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    postings = [trusted(PostingOut, account_id=a, minutes=30)]
    values = {
        "id": uuid.uuid4(),
        "status": ExchangeStatus.recorded,
        "kind": ExchangeKind.p2p,
        "minutes": 30,
        "category": "garden",
        "occurred_on": date(2026, 11, 30),
        "recorded_at": now,
        "created_at": now,
        "updated_at": now,
        "expires_at": None,
        "description": "Wednesday",
        "external_ref": None,
        "postings": postings,
        "provider_account_id": a,
        "recipient_account_id": b,
        "reverses": None,
        "reversed_by": None,
        "logged_by": trusted(LoggedBy, key_id=a, user_id=None, role=Role.broker),
        "proposed_by": None,
        "decided_by": None,
        "decided_at": None,
        "reason": None,
        "override_reason": None,
    }
    for model, given in (
        (ExchangeOut, values),
        (PostingOut, {"account_id": a, "minutes": -30}),
        (LoggedBy, {"key_id": None, "user_id": b, "role": Role.admin}),
        (
            BalanceOut,
            {
                "account_id": a,
                "balance_minutes": 5,
                "earned_minutes": 10,
                "spent_minutes": 5,
                "pending_in_minutes": 0,
                "pending_out_minutes": 30,
                "min_balance_minutes": -600,
                "max_balance_minutes": None,
                "as_of": now,
            },
        ),
    ):
        assert set(given) == set(model.model_fields), model  # every field given
        fast, slow = trusted(model, **dict(given)), model.model_construct(**dict(given))
        assert fast.model_dump(mode="json") == slow.model_dump(mode="json")
        assert fast.model_dump_json() == slow.model_dump_json()
        assert fast.model_fields_set == slow.model_fields_set
        assert fast == slow
