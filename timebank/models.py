"""Every model, imported in one place so the metadata is complete (Alembic, tests)."""

from timebank.audit.models import AuditEvent
from timebank.auth.models import (
    ApiKey,
    ApiKeyTimeBank,
    ConsoleSession,
    ConsoleUser,
    ConsoleUserTimeBank,
    SignInFailure,
)
from timebank.db import Base
from timebank.events.models import (
    Event,
    EventCounter,
    EventMember,
    WebhookDelivery,
    WebhookEndpoint,
)
from timebank.evidence.models import (
    EvidenceCheckpoint,
    EvidenceEntry,
    EvidenceNode,
    EvidenceOpen,
)
from timebank.idempotency import IdempotencyRecord
from timebank.imports.models import SheetImport
from timebank.ledger.models import Account, Exchange, Posting
from timebank.members.models import Member
from timebank.namesearch import NameWord
from timebank.organisations.models import Organisation
from timebank.reports.models import ActivityMonth, CategoryMonth
from timebank.timebanks.models import Category, TimeBank

__all__ = [
    "Account",
    "ActivityMonth",
    "ApiKey",
    "ApiKeyTimeBank",
    "AuditEvent",
    "Base",
    "Category",
    "CategoryMonth",
    "ConsoleSession",
    "ConsoleUser",
    "ConsoleUserTimeBank",
    "Event",
    "EventCounter",
    "EventMember",
    "EvidenceCheckpoint",
    "EvidenceEntry",
    "EvidenceNode",
    "EvidenceOpen",
    "Exchange",
    "IdempotencyRecord",
    "Member",
    "NameWord",
    "Organisation",
    "Posting",
    "SheetImport",
    "SignInFailure",
    "TimeBank",
    "WebhookDelivery",
    "WebhookEndpoint",
]
