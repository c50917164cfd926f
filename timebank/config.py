"""Settings, read from the environment with the ``TIMEBANK_`` prefix."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./timebank.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIMEBANK_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    # A streaming replica for reads that may lag (reports, the dashboard; docs/operations.md);
    # empty = everything reads the primary. Bypassed while it lags more than replica_max_lag.
    replica_database_url: str = ""
    replica_max_lag_seconds: float = Field(default=30.0, ge=0)
    # How long to wait for a host to answer a new connection before the next host of a
    # multi-host URL (or 503): a host gone from the network must not hold requests a minute.
    db_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=10, ge=0, le=200)
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0)
    log_level: str = "INFO"
    log_json: bool = True
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    write_retries: int = Field(default=8, ge=0, le=100)
    cors_origins: str = ""  # comma-separated origins of partner web apps; empty = CORS off
    # Abuse limits (SPEC §3.8; docs/security.md). Rate limit: per API key, per worker; 0 = off.
    rate_limit_per_minute: int = Field(default=1200, ge=0)
    report_timeout_ms: int = Field(default=30_000, ge=0)  # PostgreSQL statement_timeout; 0 = off
    # Slow clients (timebank serve): the request head must arrive within header_timeout of
    # the connection opening or the previous response; the body within body_timeout.
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    body_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    keep_alive_timeout_seconds: int = Field(default=5, ge=1, le=3600)
    max_header_bytes: int = Field(default=32_768, ge=1024)
    max_connections: int = Field(default=1000, ge=0)  # per worker; 0 = unbounded
    # The console (SPEC §3.9): sessions end after this long idle, and this long after sign-in.
    console_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    console_absolute_hours: int = Field(default=12, ge=1, le=24 * 30)
    # The session cookie's Secure flag: auto = when the request came over https (behind TLS).
    console_secure_cookie: Literal["auto", "always", "never"] = "auto"
    # Sign-in throttling: refused sign-ins allowed per account and per address in the window.
    sign_in_failures_per_account: int = Field(default=5, ge=1)
    sign_in_failures_per_address: int = Field(default=20, ge=1)
    sign_in_window_minutes: int = Field(default=15, ge=1)
    # Addresses (or CIDR ranges) of the reverse proxies in front of `timebank serve`, comma
    # separated: only a request from one of them may name the client's address in
    # X-Forwarded-For / X-Forwarded-Proto. Empty (the default): nobody, so a client cannot
    # forge its address past the per-address sign-in limit. docs/operations.md.
    trusted_proxies: str = ""
    # Evidence (docs/evidence.md): the Ed25519 key that signs checkpoints — the key itself
    # (PRIVATE+KEY+…) or a file holding it —, older keys' verifier strings still trusted
    # (comma-separated), how often a checkpoint is made, how often the sealer looks.
    signing_key: str = ""
    signing_key_file: str = ""
    verifier_keys: str = ""
    checkpoint_minutes: int = Field(default=10, ge=1, le=24 * 60)
    seal_seconds: float = Field(default=2.0, gt=0, le=3600)
    evidence_origin: str = "timebank.local"
    sealer: bool = True  # timebank serve runs the sealer in each worker (one works at a time)
    # Events and webhooks (docs/events.md): private webhook addresses (tests, intranets);
    # whether `timebank serve` runs a webhook dispatcher in each worker; how often a long
    # poll of the feed looks again.
    webhooks_allow_private: bool = False
    webhooks_dispatcher: bool = True
    events_poll_interval_seconds: float = Field(default=1.0, gt=0, le=30)
    debug: bool = False

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
