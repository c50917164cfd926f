"""Console users and their sessions (SPEC §3.9, §4, §7.2).

A console user signs in with an email and a password (an argon2id hash is stored) and holds
one role in one or several time banks (an admin in none is a global admin). A sign-in opens
a session stored in the database: the browser keeps a random token, the database its
SHA-256. A session ends when it is revoked, signed out, idle for ``idle`` or older than
``absolute``; the user's disabling ends them all at once. ``last_seen_at`` is written at
most once a minute. Refused sign-ins are counted per account and per address, in the
database, so the throttle holds across workers. Every change is audited.

Every function takes the time as ``now`` (the web layer's injectable clock): tests move it
instead of sleeping.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from zxcvbn import zxcvbn

from timebank.access import Principal, Role
from timebank.audit import service as audit
from timebank.auth.models import ConsoleSession, ConsoleUser, ConsoleUserTimeBank, SignInFailure
from timebank.db import begin_write, end_read, uuid7
from timebank.errors import Duplicate, Forbidden, InvalidInput, NotFound, RateLimited, Unauthorized
from timebank.timebanks.models import TimeBank

HASHER = PasswordHasher()  # argon2id, the library's current recommended parameters
MIN_PASSWORD = 10
LAST_SEEN_LAG = timedelta(minutes=1)
CONSOLE_ROLES = (Role.admin, Role.broker, Role.funder)
WRONG = "The email address or password is not right"


# the console session's cookie (its path is /console; ``GET /v1/me`` also reads it)
SESSION_COOKIE = "timebank_session"


def normal_email(email: str) -> str:
    return email.strip().lower()


def hash_password(password: str) -> str:
    return HASHER.hash(password)


TOO_EASY = (
    "is too easy to guess (a common password, a word with a few numbers, or a repeated or "
    "keyboard pattern): three random words make a good one"
)
# One-time passwords: no letters that look alike (0/O, 1/l/I), read out easily on a phone.
_OTP_LETTERS = "abcdefghjkmnpqrstuvwxyz23456789"


def check_password(password: str) -> None:
    """At least ten characters, and not one that is quick to guess: zxcvbn (Dropbox's
    estimator, which knows the commonest passwords, words, names, dates, keyboard walks and
    repeats) must rate it at least 2 of 4 (about a million guesses or more)."""
    if len(password) < MIN_PASSWORD:
        raise InvalidInput("password", f"must be at least {MIN_PASSWORD} characters")
    if len(password) > 1000:
        raise InvalidInput("password", "must be at most 1000 characters")
    if zxcvbn(password[:100])["score"] < 2:
        raise InvalidInput("password", TOO_EASY)


def one_time_password() -> str:
    """A password an admin reads out to someone once (three groups of four letters and
    digits, about 59 bits); its holder must choose their own at the next sign-in."""
    return "-".join("".join(secrets.choice(_OTP_LETTERS) for _ in range(4)) for _ in range(3))


def _verify(stored: str, password: str) -> bool:
    try:
        return HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


_DUMMY = HASHER.hash("not anyone's password")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class SignedIn:
    """Who a session is: the user, the banks they work in, the session row."""

    user: ConsoleUser
    timebank_ids: tuple[uuid.UUID, ...]
    session: ConsoleSession

    @property
    def is_global_admin(self) -> bool:
        return self.user.role is Role.admin and not self.timebank_ids

    def can_see(self, timebank_id: uuid.UUID) -> bool:
        return self.is_global_admin or timebank_id in self.timebank_ids

    def principal(self, timebank_id: uuid.UUID | None = None) -> Principal:
        """The user as a ``Principal`` — the same as a key's of that role and scope — working
        in ``timebank_id`` (a user of several banks acts in one bank at a time)."""
        if self.is_global_admin:
            return Principal(key_id=None, role=Role.admin, user_id=self.user.id)
        banks = frozenset(self.timebank_ids)
        if self.user.role is Role.funder:
            return Principal(
                key_id=None, role=Role.funder, report_timebanks=banks, user_id=self.user.id
            )
        here = timebank_id if timebank_id in banks else None
        return Principal(key_id=None, role=self.user.role, timebank_id=here, user_id=self.user.id)


async def _banks(session: AsyncSession, user_id: uuid.UUID) -> tuple[uuid.UUID, ...]:
    rows = await session.execute(
        select(ConsoleUserTimeBank.timebank_id)
        .where(ConsoleUserTimeBank.user_id == user_id)
        .order_by(ConsoleUserTimeBank.timebank_id)
    )
    return tuple(rows.scalars())


def _events(
    principal: Principal,
    action: str,
    banks: tuple[uuid.UUID, ...],
    target_type: str,
    target_id: object,
    details: dict[str, object] | None = None,
) -> list[dict[str, object]]:
    """One audit event per bank the change concerns (a global one: without a bank)."""
    return [
        audit.event(
            principal,
            action,
            timebank_id=tb,
            target_type=target_type,
            target_id=target_id,
            details=details,
        )
        for tb in (banks or (None,))
    ]


def _require_user_admin(principal: Principal, banks: tuple[uuid.UUID, ...]) -> None:
    """Admins manage users: a global admin anyone, a bank's admin users of their bank only."""
    if principal.role is not Role.admin:
        raise Forbidden("Only an admin can manage console users")
    if principal.is_global_admin:
        return
    if not banks or any(tb != principal.timebank_id for tb in banks):
        raise Forbidden("A time bank's admin manages users of that time bank only")


async def create_user(
    session: AsyncSession,
    principal: Principal,
    *,
    email: str,
    password: str,
    role: Role,
    timebank_ids: list[uuid.UUID],
    now: datetime,
    name: str | None = None,
    must_change_password: bool = False,
) -> ConsoleUser:
    """Create a console user and commit. No time bank: a global admin (admin role only).
    ``must_change_password``: the password is a one-time one an admin passes on; the console
    asks the user for their own before anything else."""
    banks = tuple(dict.fromkeys(timebank_ids))
    _require_user_admin(principal, banks)
    address = normal_email(email)
    if "@" not in address or len(address) > 320 or address.startswith("@"):
        raise InvalidInput("email", "must be an email address, like name@example.org")
    if role not in CONSOLE_ROLES:
        raise InvalidInput("role", "must be admin, broker or funder")
    if not banks and role is not Role.admin:
        raise InvalidInput("timebanks", "a broker or funder works in at least one time bank")
    check_password(password)
    taken = await session.execute(select(ConsoleUser.id).where(ConsoleUser.email == address))
    if taken.first() is not None:
        raise Duplicate("A console user with this email address exists")
    user = ConsoleUser(
        id=uuid7(),
        email=address,
        name=(name or "").strip() or None,
        password_hash=hash_password(password),
        role=role,
        created_at=now,
        password_changed_at=now,
        must_change_password=must_change_password,
    )
    session.add(user)
    await session.flush()
    for tb in banks:
        session.add(ConsoleUserTimeBank(user_id=user.id, timebank_id=tb))
    await session.flush()
    await audit.record_many(
        session,
        _events(principal, "console_user.create", banks, "console_user", user.id, {"role": role}),
    )
    await session.commit()
    return user


async def list_users(
    session: AsyncSession, principal: Principal, timebank_id: uuid.UUID | None
) -> list[tuple[ConsoleUser, tuple[uuid.UUID, ...]]]:
    """Console users (of one bank, or all for a global admin with no bank given)."""
    if timebank_id is None:
        principal.require_global_admin()
        users = list(
            (await session.execute(select(ConsoleUser).order_by(ConsoleUser.email))).scalars()
        )
    else:
        principal.require(timebank_id, Role.admin)
        users = list(
            (
                await session.execute(
                    select(ConsoleUser)
                    .join(ConsoleUserTimeBank, ConsoleUserTimeBank.user_id == ConsoleUser.id)
                    .where(ConsoleUserTimeBank.timebank_id == timebank_id)
                    .order_by(ConsoleUser.email)
                )
            ).scalars()
        )
    return [(u, await _banks(session, u.id)) for u in users]


async def find_user(session: AsyncSession, email_or_id: str) -> ConsoleUser:
    try:
        user = await session.get(ConsoleUser, uuid.UUID(email_or_id))
    except ValueError:
        user = (
            await session.execute(
                select(ConsoleUser).where(ConsoleUser.email == normal_email(email_or_id))
            )
        ).scalar_one_or_none()
    if user is None:
        raise NotFound("No such console user")
    return user


async def _get_managed(
    session: AsyncSession, principal: Principal, user_id: uuid.UUID
) -> tuple[ConsoleUser, tuple[uuid.UUID, ...]]:
    user = await session.get(ConsoleUser, user_id)
    if user is None:
        raise NotFound("No such console user")
    banks = await _banks(session, user.id)
    if not principal.is_global_admin and principal.timebank_id not in banks:
        raise NotFound("No such console user")  # another bank's user: as unknown
    _require_user_admin(principal, banks)
    return user, banks


async def disable_user(
    session: AsyncSession, principal: Principal, user_id: uuid.UUID, now: datetime
) -> ConsoleUser:
    """Disable a user: their sessions end at once; they cannot sign in again."""
    user, banks = await _get_managed(session, principal, user_id)
    if principal.user_id == user.id:
        raise InvalidInput("user", "you cannot disable yourself")
    if user.disabled_at is None:
        user.disabled_at = now
        await _revoke_all(session, user.id, now)
        await audit.record_many(
            session, _events(principal, "console_user.disable", banks, "console_user", user.id)
        )
    await session.commit()
    return user


async def set_password(
    session: AsyncSession, principal: Principal, user_id: uuid.UUID, password: str, now: datetime
) -> None:
    """An admin sets a user's password (a forgotten one); the user's sessions end."""
    user, banks = await _get_managed(session, principal, user_id)
    check_password(password)
    user.password_hash = hash_password(password)
    user.password_changed_at = now
    await _revoke_all(session, user.id, now)
    await audit.record_many(
        session, _events(principal, "console_user.password", banks, "console_user", user.id)
    )
    await session.commit()


async def reset_password(
    session: AsyncSession, principal: Principal, user_id: uuid.UUID, now: datetime
) -> str:
    """A forgotten password: the user gets a one-time password (returned, to be shown once
    to the admin) and must choose their own at the next sign-in; their sessions end. A
    disabled user stays disabled (re-enabling is its own, audited, step)."""
    user, banks = await _get_managed(session, principal, user_id)
    password = one_time_password()
    user.password_hash = hash_password(password)
    user.password_changed_at = now
    user.must_change_password = True
    await _revoke_all(session, user.id, now)
    await session.execute(delete(SignInFailure).where(SignInFailure.email == user.email))
    await audit.record_many(
        session, _events(principal, "console_user.password_reset", banks, "console_user", user.id)
    )
    await session.commit()
    return password


async def enable_user(
    session: AsyncSession, principal: Principal, user_id: uuid.UUID, now: datetime
) -> ConsoleUser:
    """Let a disabled user sign in again (with the password they had, or a reset one)."""
    user, banks = await _get_managed(session, principal, user_id)
    if user.disabled_at is not None:
        user.disabled_at = None
        await audit.record_many(
            session, _events(principal, "console_user.enable", banks, "console_user", user.id)
        )
    await session.commit()
    return user


async def update_user(
    session: AsyncSession,
    principal: Principal,
    user_id: uuid.UUID,
    *,
    role: Role | None = None,
    timebank_ids: list[uuid.UUID] | None = None,
    now: datetime,
) -> ConsoleUser:
    """Change a user's role or the banks they work in. A bank's admin changes roles in
    their bank; only a global admin moves a user between banks. Nobody changes their own
    role (an admin cannot lock themselves out). Their sessions end, so the new rights apply
    at once."""
    user, banks = await _get_managed(session, principal, user_id)
    details: dict[str, object] = {}
    if role is not None and role is not user.role:
        if role not in CONSOLE_ROLES:
            raise InvalidInput("role", "must be admin, broker or funder")
        if principal.user_id == user.id:
            raise InvalidInput("role", "you cannot change your own role")
        details["role"] = {"from": user.role.value, "to": role.value}
    new_banks = banks
    if timebank_ids is not None and set(timebank_ids) != set(banks):
        principal.require_global_admin()
        new_banks = tuple(dict.fromkeys(timebank_ids))
        found = await session.scalar(
            select(func.count()).select_from(TimeBank).where(TimeBank.id.in_(new_banks))
        )
        if (found or 0) != len(new_banks):
            raise InvalidInput("timebanks", "must be time banks of this service")
        details["timebanks"] = {
            "from": [str(b) for b in banks],
            "to": [str(b) for b in new_banks],
        }
    if not new_banks and (role or user.role) is not Role.admin:
        raise InvalidInput("timebanks", "a broker or funder works in at least one time bank")
    if not details:
        await session.commit()
        return user
    if role is not None:
        user.role = role
    if "timebanks" in details:
        await session.execute(
            delete(ConsoleUserTimeBank).where(ConsoleUserTimeBank.user_id == user.id)
        )
        for tb in new_banks:
            session.add(ConsoleUserTimeBank(user_id=user.id, timebank_id=tb))
    await _revoke_all(session, user.id, now)
    await audit.record_many(
        session,
        _events(
            principal,
            "console_user.update",
            tuple(dict.fromkeys(banks + new_banks)),
            "console_user",
            user.id,
            details,
        ),
    )
    await session.commit()
    return user


async def _revoke_all(
    session: AsyncSession, user_id: uuid.UUID, now: datetime, keep: uuid.UUID | None = None
) -> None:
    stmt = update(ConsoleSession).where(
        ConsoleSession.user_id == user_id, ConsoleSession.revoked_at.is_(None)
    )
    if keep is not None:
        stmt = stmt.where(ConsoleSession.id != keep)
    await session.execute(stmt.values(revoked_at=now))


async def list_sessions(
    session: AsyncSession,
    principal: Principal,
    timebank_id: uuid.UUID,
    now: datetime,
    idle: timedelta,
    absolute: timedelta,
) -> list[tuple[ConsoleSession, ConsoleUser]]:
    """The live sessions of a bank's console users (admin)."""
    principal.require(timebank_id, Role.admin)
    rows = await session.execute(
        select(ConsoleSession, ConsoleUser)
        .join(ConsoleUser, ConsoleUser.id == ConsoleSession.user_id)
        .join(ConsoleUserTimeBank, ConsoleUserTimeBank.user_id == ConsoleUser.id)
        .where(
            ConsoleUserTimeBank.timebank_id == timebank_id,
            ConsoleSession.revoked_at.is_(None),
            ConsoleSession.last_seen_at > now - idle,
            ConsoleSession.created_at > now - absolute,
        )
        .order_by(ConsoleSession.created_at.desc())
    )
    return [(s, u) for s, u in rows.tuples()]


async def revoke_session(
    session: AsyncSession, principal: Principal, session_id: uuid.UUID, now: datetime
) -> None:
    """End one session at once (an admin's "sign out this browser")."""
    row = await session.get(ConsoleSession, session_id)
    if row is None:
        raise NotFound("No such session")
    _, banks = await _get_managed(session, principal, row.user_id)
    if row.revoked_at is None:
        row.revoked_at = now
        await audit.record_many(
            session, _events(principal, "console_session.revoke", banks, "console_session", row.id)
        )
    await session.commit()


async def sign_in(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    address: str,
    now: datetime,
    window: timedelta,
    per_account: int,
    per_address: int,
) -> tuple[SignedIn, str]:
    """Check the password and open a session: (who, the cookie's token). Refused alike for
    an unknown email, a wrong password and a disabled user (401); ``rate_limited`` once the
    account or the address has had too many refusals within ``window``."""
    address = address[:64]
    email = normal_email(email)[:320]
    since = now - window
    by_account = await session.scalar(
        select(func.count()).where(SignInFailure.email == email, SignInFailure.at > since)
    )
    by_address = await session.scalar(
        select(func.count()).where(SignInFailure.address == address, SignInFailure.at > since)
    )
    if (by_account or 0) >= per_account or (by_address or 0) >= per_address:
        await session.rollback()
        raise RateLimited(
            "Too many attempts to sign in. Wait 15 minutes and try again.",
            retry_after=int(window.total_seconds()),
        )
    user = (
        await session.execute(select(ConsoleUser).where(ConsoleUser.email == email))
    ).scalar_one_or_none()
    good = _verify(user.password_hash if user else _DUMMY, password)
    if user is None or not good or user.disabled_at is not None:
        session.add(SignInFailure(email=email, address=address, at=now))
        await session.commit()
        raise Unauthorized(WRONG)
    banks = await _banks(session, user.id)
    token = secrets.token_urlsafe(32)
    row = ConsoleSession(
        id=uuid7(),
        token_hash=token_hash(token),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        address=address,
    )
    session.add(row)
    if HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    await session.execute(delete(SignInFailure).where(SignInFailure.email == email))
    who = SignedIn(user, banks, row)
    await audit.record_many(
        session, _events(who.principal(), "console_user.sign_in", banks, "console_session", row.id)
    )
    await session.commit()
    return who, token


async def resolve(
    session: AsyncSession, token: str | None, *, now: datetime, idle: timedelta, absolute: timedelta
) -> SignedIn | None:
    """The live session of a cookie's token, or ``None`` (unknown, revoked, timed out, or
    the user disabled). Read from the database on every request, so a revocation is
    immediate in every worker; ``last_seen_at`` is written at most once a minute."""
    if not token or len(token) > 200:
        return None
    found = (
        await session.execute(
            select(ConsoleSession, ConsoleUser)
            .join(ConsoleUser, ConsoleUser.id == ConsoleSession.user_id)
            .where(ConsoleSession.token_hash == token_hash(token))
        )
    ).first()
    if found is None:
        return None
    row, user = found.tuple()
    if (
        row.revoked_at is not None
        or user.disabled_at is not None
        or now - row.last_seen_at >= idle
        or now - row.created_at >= absolute
    ):
        return None
    banks = await _banks(session, user.id)
    session.expunge(row)  # plain values from here on: ending the read must not expire them
    session.expunge(user)
    await end_read(session)
    if now - row.last_seen_at > LAST_SEEN_LAG:
        try:  # best effort, as a key's last_used_at: a busy database never fails a page
            await begin_write(session)
            await session.execute(
                update(ConsoleSession).where(ConsoleSession.id == row.id).values(last_seen_at=now)
            )
            await session.commit()
            row.last_seen_at = now
        except DBAPIError:
            await session.rollback()
    return SignedIn(user, banks, row)


async def sign_out(session: AsyncSession, who: SignedIn, now: datetime) -> None:
    await session.execute(
        update(ConsoleSession).where(ConsoleSession.id == who.session.id).values(revoked_at=now)
    )
    await audit.record_many(
        session,
        _events(
            who.principal(),
            "console_user.sign_out",
            who.timebank_ids,
            "console_session",
            who.session.id,
        ),
    )
    await session.commit()


async def set_language(session: AsyncSession, who: SignedIn, lang: str) -> None:
    """Remember the console language the user chose (a display preference: not audited)."""
    await session.execute(
        update(ConsoleUser).where(ConsoleUser.id == who.user.id).values(language=lang)
    )
    await session.commit()
    who.user.language = lang


async def change_password(
    session: AsyncSession, who: SignedIn, *, current: str, new: str, now: datetime
) -> None:
    """Change one's own password; every other session of the user ends."""
    user = await session.get(ConsoleUser, who.user.id)
    assert user is not None
    if not _verify(user.password_hash, current):
        raise InvalidInput("current_password", "is not your current password")
    check_password(new)
    if new == current:
        raise InvalidInput("password", "must not be the same as your current password")
    user.password_hash = hash_password(new)
    user.password_changed_at = now
    user.must_change_password = False
    who.user.must_change_password = False
    await _revoke_all(session, user.id, now, keep=who.session.id)
    await audit.record_many(
        session,
        _events(
            who.principal(), "console_user.password", who.timebank_ids, "console_user", user.id
        ),
    )
    await session.commit()


async def bank_names(session: AsyncSession, ids: tuple[uuid.UUID, ...]) -> list[TimeBank]:
    if not ids:
        return list((await session.execute(select(TimeBank).order_by(TimeBank.name))).scalars())
    return list(
        (
            await session.execute(
                select(TimeBank).where(TimeBank.id.in_(ids)).order_by(TimeBank.name)
            )
        ).scalars()
    )
