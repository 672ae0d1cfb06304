"""Settings, read from the environment with the ``COVERPROOF_`` prefix.

Production refuses to start on a missing secret, database or https URL; each problem is one
sentence a person can act on. Development fills the gaps: an embedded PostgreSQL and a secret
key generated once and kept in the data directory.
"""

from __future__ import annotations

import ipaddress
import secrets
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Env(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class ConfigError(Exception):
    """The settings cannot serve; ``problems`` lists one sentence per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


# The longest a duration setting may be: added to today, a longer one may pass the last date a
# date can hold (COVERPROOF_COVER_EXPIRY_WINDOW_DAYS=3000000 failed every cover status read).
TEN_YEARS_DAYS = 3653
TEN_YEARS_HOURS = TEN_YEARS_DAYS * 24
TEN_YEARS_MINUTES = TEN_YEARS_HOURS * 60
MOST_BODY_BYTES = 10_000_000
MOST_POOL_SIZE = 1_000
MOST_RENDER_SLOTS = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COVERPROOF_", extra="ignore")

    env: Env = Env.DEVELOPMENT
    database_url: SecretStr | None = None
    admin_database_url: SecretStr | None = None
    # An administrator who may create event triggers, for ``coverproof db seal`` (app/db/seal.py).
    seal_database_url: SecretStr | None = None
    secret_key: SecretStr | None = None
    public_url: str = ""
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    data_dir: Path = Path(".coverproof")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # A body is read whole before it is parsed: ten megabytes is a hundred times the default.
    max_body_bytes: int = Field(default=100_000, ge=1, le=MOST_BODY_BYTES)
    # Per pool (the app's and the write lane's): PostgreSQL serves 100 connections by default.
    db_pool_size: int = Field(default=10, ge=1, le=MOST_POOL_SIZE)
    session_idle_minutes: int = Field(default=30, ge=1, le=TEN_YEARS_MINUTES)
    # At most 30 days: the database starts no longer session, whatever it is asked (0025).
    session_lifetime_hours: int = Field(default=12, ge=1, le=720)
    link_base_url: str | None = None
    magic_link_minutes: int = Field(default=10, ge=1, le=TEN_YEARS_MINUTES)
    verification_hours: int = Field(default=24, ge=1, le=TEN_YEARS_HOURS)
    password_reset_minutes: int = Field(default=60, ge=1, le=TEN_YEARS_MINUTES)
    invitation_days: int = Field(default=7, ge=1, le=TEN_YEARS_DAYS)
    declaration_token_days: int = Field(default=14, ge=1, le=TEN_YEARS_DAYS)
    declaration_grace_days: int = Field(default=7, ge=0, le=TEN_YEARS_DAYS)
    persisted_only: bool = False
    fast_path: bool = True
    audit_signing_key: SecretStr | None = None
    # The public halves (PEM) of the keys that signed checkpoints before this one, after a
    # rotation: what they signed still verifies.
    audit_retired_public_keys: str = ""
    # The ids of keys no longer trusted (comma-separated): a key that leaked. What they signed
    # vouches for nothing, and is left out of exports and the published keys.
    audit_revoked_key_ids: str = ""
    # 0: no periodic checkpoints.
    audit_checkpoint_minutes: int = Field(default=60, ge=0, le=TEN_YEARS_MINUTES)
    # How often stored pack PDFs that no pack names are deleted (app/evidence/sweep.py); 0: never.
    pack_sweep_minutes: int = Field(default=60, ge=0, le=TEN_YEARS_MINUTES)
    smtp_url: SecretStr | None = None
    mail_from: str = "CoverProof <no-reply@coverproof.test>"
    rate_limit_storage: str = "memory://"
    # Where limits are counted in a shared Redis: deployments sharing one count apart.
    rate_limit_prefix: str = "coverproof"
    rate_limit_scale: int = Field(default=1, ge=1)
    ip_requests_per_minute: int = Field(default=600, ge=1)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cover_expiry_window_days: int = Field(default=30, ge=0, le=TEN_YEARS_DAYS)
    # Evidence packs: s3://bucket/prefix for S3-compatible storage (R2, AWS); None keeps them
    # in <data_dir>/packs.
    storage_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "auto"
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    # Each render holds a thread and a pack's content in memory, on a process serving every firm.
    pack_render_concurrency: int = Field(default=2, ge=1, le=MOST_RENDER_SLOTS)

    @model_validator(mode="after")
    def _default_public_url(self) -> Settings:
        # Unset, the public URL is where `coverproof serve` listens, so links and the
        # same-origin check follow COVERPROOF_PORT in development.
        if not self.public_url:
            self.public_url = f"http://{self.host}:{self.port}"
        return self

    @field_validator("allowed_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, proxies: list[str]) -> list[str]:
        # Parsed on each request (app/ratelimit/client_ip.py): an entry that is no address
        # failed every API request there, while /readyz answered.
        for place, entry in enumerate(proxies, start=1):
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"COVERPROOF_TRUSTED_PROXIES: entry {place} is not an IP address or network "
                    "(10.0.0.5, 10.0.0.0/8); a host name is not resolved."
                ) from None
        return proxies

    @property
    def is_production(self) -> bool:
        return self.env is Env.PRODUCTION

    @property
    def public_origin(self) -> str:
        parts = urlsplit(self.public_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def links_url(self) -> str:
        """Where emailed links point: our own minimal pages, or a frontend's."""
        return (self.link_base_url or self.public_url).rstrip("/")

    @property
    def session_idle(self) -> timedelta:
        """How long a session lasts unused."""
        return timedelta(minutes=self.session_idle_minutes)

    @property
    def trusted_origins(self) -> frozenset[str]:
        """Origins whose browser requests may carry the session cookie."""
        return frozenset([self.public_origin, *self.allowed_origins])

    def check_production(self) -> None:
        """Raise ConfigError naming every setting production cannot run without."""
        if not self.is_production:
            return
        problems = []
        if self.secret_key is None or len(self.secret_key.get_secret_value()) < 32:
            problems.append(
                "COVERPROOF_SECRET_KEY must be set to at least 32 random characters in production."
            )
        if self.database_url is None:
            problems.append(
                "COVERPROOF_DATABASE_URL must name the production database (as coverproof_app); "
                "the embedded PostgreSQL is for development only."
            )
        if self.rate_limit_scale != 1:
            problems.append("COVERPROOF_RATE_LIMIT_SCALE is for load tests; unset it.")
        if self.rate_limit_storage.startswith("memory:"):
            problems.append(
                "COVERPROOF_RATE_LIMIT_STORAGE must name Redis (redis://host:6379/0) in "
                "production: in memory, each process counts alone, so every limit is multiplied "
                "by the number of processes."
            )
        if urlsplit(self.public_url).scheme != "https":
            problems.append("COVERPROOF_PUBLIC_URL must be an https:// URL in production.")
        # Unset, links follow the public URL, refused above if it is not https.
        if self.link_base_url is not None and urlsplit(self.links_url).scheme != "https":
            problems.append(
                "COVERPROOF_LINK_BASE_URL must be an https:// URL in production: emailed links "
                "carry their tokens to it."
            )
        if self.storage_url is None:
            problems.append(
                "COVERPROOF_STORAGE_URL must name the object storage for evidence packs "
                "(s3://bucket/prefix, encrypted at rest by its provider); the local folder is for "
                "development only."
            )
        if problems:
            raise ConfigError(problems)

    def resolved_secret_key(self) -> str:
        """The secret key; in development, generated once and kept in the data directory."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        self.check_production()
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(48))
        return path.read_text().strip()


def read_settings() -> Settings:
    """The settings from the environment; raise ConfigError naming each setting refused, and
    never its value, which may be a secret (pydantic's own message prints it)."""
    try:
        return Settings()
    except ValidationError as error:
        details = error.errors(include_url=False, include_input=False)
        raise ConfigError([_problem(detail) for detail in details]) from None


def _problem(detail: ErrorDetails) -> str:
    name = f"COVERPROOF_{str(detail['loc'][0]).upper()}" if detail["loc"] else "COVERPROOF_*"
    # A validator's own sentence, without pydantic's "Value error, " before it.
    own = detail.get("ctx", {}).get("error")
    message = str(own) if isinstance(own, ValueError) else detail["msg"]
    return message if message.startswith(name) else f"{name}: {message}"
