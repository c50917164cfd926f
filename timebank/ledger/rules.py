"""The ledger's rules, as pure functions: which kind an exchange is, an account's limits, and
when a movement is refused. The service, the demo generator and the reports all use these;
none keeps a copy.

Money-flow rules (SPEC §2): amounts are integer minutes; providers are credited (+),
recipients debited (−). A movement is refused if it leaves an account outside its limits
*and further outside than before*: a debit may not take a balance below the minimum, a
credit may not take it above the maximum; a movement towards the range is always allowed.
Reversals and audited broker overrides are exempt.
"""

from __future__ import annotations

from typing import Protocol

from timebank.ledger.models import ExchangeKind, OwnerType

SERVICE_KINDS = (ExchangeKind.p2p, ExchangeKind.p2o, ExchangeKind.o2p, ExchangeKind.o2o)
POOL_KINDS = (ExchangeKind.pool_grant, ExchangeKind.pool_donation)
_BY_SIDES = {
    (OwnerType.member, OwnerType.member): ExchangeKind.p2p,
    (OwnerType.member, OwnerType.organisation): ExchangeKind.p2o,
    (OwnerType.organisation, OwnerType.member): ExchangeKind.o2p,
    (OwnerType.organisation, OwnerType.organisation): ExchangeKind.o2o,
}


def kind_of(provider: OwnerType, recipient: OwnerType) -> ExchangeKind:
    """The kind of an exchange from the owner types of its provider and recipient sides. A
    pool grant credits a member from the pool's account, so the pool is the recipient
    (debited); a donation is the reverse; otherwise the member/organisation pair decides."""
    if recipient is OwnerType.pool:
        return ExchangeKind.pool_grant
    if provider is OwnerType.pool:
        return ExchangeKind.pool_donation
    return _BY_SIDES[(provider, recipient)]


class HasLimits(Protocol):
    owner_type: OwnerType
    custom_limits: bool
    min_balance_minutes: int | None
    max_balance_minutes: int | None


class BankLimits(Protocol):
    member_min_balance_minutes: int | None
    member_max_balance_minutes: int | None
    organisation_min_balance_minutes: int | None
    organisation_max_balance_minutes: int | None


def effective_limits(account: HasLimits, tb: BankLimits) -> tuple[int | None, int | None]:
    """An account's (minimum, maximum) balance: its own if it has custom limits, else the
    time bank's default for its owner type; the pool is unbounded. None means unbounded."""
    if account.custom_limits:
        return account.min_balance_minutes, account.max_balance_minutes
    if account.owner_type is OwnerType.member:
        return tb.member_min_balance_minutes, tb.member_max_balance_minutes
    if account.owner_type is OwnerType.organisation:
        return tb.organisation_min_balance_minutes, tb.organisation_max_balance_minutes
    return None, None


def admissible(delta: int, lo: int | None, hi: int | None) -> tuple[int | None, int | None]:
    """The balances an account may start from for a movement of ``delta`` within limits
    [lo, hi]: (lowest, highest), None for no bound. A debit must not end below ``lo``, a
    credit not above ``hi``; a movement towards the range is always allowed. This is the
    limit rule, once: :func:`refused` asks it in Python, and the one-statement write on
    PostgreSQL (:mod:`timebank.ledger.fast`) makes its conditional UPDATE keep the balance
    inside the range it gives, so the check is atomic there."""
    if delta < 0 and lo is not None:
        return lo - delta, None
    if delta > 0 and hi is not None:
        return None, hi - delta
    return None, None


def refused(balance: int, delta: int, lo: int | None, hi: int | None) -> bool:
    """Whether moving ``balance`` by ``delta`` takes it further outside [lo, hi]."""
    low, high = admissible(delta, lo, hi)
    return (low is not None and balance < low) or (high is not None and balance > high)


def duration(minutes: int) -> str:
    """Minutes as people say them: ``2 h 30 min``, ``45 min``, ``−10 h``."""
    sign = "−" if minutes < 0 else ""
    h, m = divmod(abs(minutes), 60)
    parts = [f"{h} h"] * bool(h) + [f"{m} min"] * bool(m or not h)
    return sign + " ".join(parts)


def limit_detail(
    party: str,
    balance_minutes: int,
    change_minutes: int,
    min_balance_minutes: int | None,
    max_balance_minutes: int | None,
) -> str:
    """Why an exchange was refused by a balance limit, naming the party (SPEC §2.5)."""
    after = balance_minutes + change_minutes
    if change_minutes < 0 and min_balance_minutes is not None:
        limit = f"below the lower limit of {duration(min_balance_minutes)}"
    else:
        limit = f"above the upper limit of {duration(max_balance_minutes or 0)}"
    return (
        f"{party} would go to {duration(after)}, {limit} (balance {duration(balance_minutes)}, "
        f"this exchange {'+' if change_minutes > 0 else ''}{duration(change_minutes)})"
    )
