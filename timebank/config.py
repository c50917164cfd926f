"""Settings, read from the environment with the ``TIMEBANK_`` prefix."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./timebank.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIMEBANK_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=10, ge=0, le=200)
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0)
    log_level: str = "INFO"
    log_json: bool = True
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    write_retries: int = Field(default=8, ge=0, le=100)
    cors_origins: str = ""  # comma-separated origins of partner web apps; empty = CORS off
    debug: bool = False

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
