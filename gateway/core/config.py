"""Typed settings, read once from hardhat-free-config.toml and LOYALTY_* variables."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
# Copies of the repository's data files inside an installed package (setup.py puts them there).
PACKAGE_DATA = Path(__file__).resolve().parents[1] / "_data"


def shipped(*relative: str) -> Path:
    """A data file of the repository (`contracts/artifacts/...`, `hardhat-free-config.toml`):
    the checkout's own when running from a checkout, else the copy built into the package."""
    checkout = REPO_ROOT.joinpath(*relative)
    return checkout if checkout.exists() else PACKAGE_DATA.joinpath(*relative)


CONFIG_FILE = Path(os.environ.get("LOYALTY_CONFIG_FILE", shipped("hardhat-free-config.toml")))

# Values that only a development setup may run with.
DEV_KEY_ENCRYPTION_KEY = "development-only-key-encryption-key"


class CompilerSettings(BaseModel):
    version: str = "0.8.28"
    optimizer: bool = True
    optimizer_runs: int = 200
    via_ir: bool = True
    evm_version: str = "cancun"


class NetworkSettings(BaseModel):
    kind: Literal["embedded", "rpc"] = "rpc"
    rpc_url: str | None = None
    chain_id: int | None = None


class TierSettings(BaseModel):
    name: str
    threshold: int = Field(ge=0)
    multiplier_bps: int = Field(ge=1, le=1_000_000)


class CoalitionSettings(BaseModel):
    name: str = "Coalition Points"
    symbol: str = "PTS"
    expiry_months: int = Field(default=12, ge=0, le=120)
    admin_delay_seconds: int = Field(default=86400, ge=0)
    # Seconds between an operator's programme change and its effect (SPEC section 3, r2): the
    # ledger refuses less than 7 days outside development chains.
    notice_period_seconds: int = Field(default=0, ge=0)
    transfers_enabled: bool = False
    point_value_minor_units: int = Field(default=1, ge=0)
    point_value_currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    tiers: list[TierSettings] = Field(
        default_factory=lambda: [TierSettings(name="Base", threshold=0, multiplier_bps=10000)]
    )

    @model_validator(mode="after")
    def _tiers_ascending(self) -> CoalitionSettings:
        thresholds = [t.threshold for t in self.tiers]
        if not thresholds or thresholds[0] != 0 or thresholds != sorted(set(thresholds)):
            raise ValueError("tiers must start at threshold 0 and ascend strictly")
        return self


class GatewaySettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path(".loyalty")
    confirmations: int = Field(default=0, ge=0)
    # Whether the gateway signs operator calls (it then onboards partners on-chain itself).
    # False: it holds no operator key (SPEC section 3); partners are added on-chain with
    # `loyalty operator add-partner` where the key is kept, then adopted by their id. In
    # production without LOYALTY_DEPLOYER_KEY the gateway also runs without it.
    operator_key_in_gateway: bool = True
    batch_max_operations: int = Field(default=100, ge=1, le=200)
    batch_window_ms: int = Field(default=50, ge=0)
    rpc_timeout_seconds: float = Field(default=10.0, gt=0)
    # The tip per gas of every transaction the gateway sends (0 on a free-gas consortium chain;
    # an L2's going rate there).
    priority_fee_wei: int = Field(default=10**9, ge=0)
    # Requests per second each API key may make (bursts of twice that) before 429s; one gateway
    # process counts its own (see docs/gateway.md).
    rate_limit_per_second: float = Field(default=200.0, gt=0)
    # A request body must arrive within this many seconds of the request's start, else 408 and
    # the connection is closed (a client that sends half a body and stalls holds nothing).
    body_timeout_seconds: float = Field(default=10.0, gt=0)
    # Member and partner notices for webhooks (gateway/webhooks/notices.py): how often the scan
    # runs (0: never), and its thresholds.
    notice_interval_seconds: float = Field(default=3600.0, ge=0)
    notice_expiring_days: int = Field(default=30, ge=1, le=365)
    notice_inactive_days: int = Field(default=60, ge=1, le=3650)
    notice_allowance_low_points: int = Field(default=10_000, ge=0)
    # The programme watch (gateway/accounts/changes.py): how often each gateway process looks
    # for programme changes scheduled or applied on-chain (0: never), and whether the process
    # that leads the submitter applies due changes itself with the operator's key.
    programme_watch_seconds: float = Field(default=5.0, ge=0)
    apply_due_changes: bool = True
    # Entries each of the per-member caches of a gateway process holds at most (addresses,
    # tiers, API keys; decrypted keys at most 10,000), the most recently used: with the default
    # they hold at most ~60 MiB however large the coalition grows (scripts/bench_caches.py).
    member_cache_entries: int = Field(default=100_000, ge=1)


class Settings(BaseSettings):
    """Every setting of the project. Built once by `get_settings()`."""

    model_config = SettingsConfigDict(
        env_prefix="LOYALTY_", env_nested_delimiter="__", toml_file=CONFIG_FILE, extra="ignore"
    )

    env: Literal["development", "production"] = "development"
    key_encryption_key: SecretStr = SecretStr(DEV_KEY_ENCRYPTION_KEY)
    database_url: str | None = None
    deployer_key: SecretStr | None = None  # the operator's key on networks without dev accounts
    relayer_key: SecretStr | None = None  # pays gas for batches (default: the operator's key)
    compiler: CompilerSettings = CompilerSettings()
    networks: dict[str, NetworkSettings] = Field(default_factory=lambda: {"embedded": NetworkSettings(kind="embedded")})
    coalition: CoalitionSettings = CoalitionSettings()
    gateway: GatewaySettings = GatewaySettings()

    @model_validator(mode="after")
    def _no_default_secret_in_production(self) -> Settings:
        if self.env == "production":
            kek = self.key_encryption_key.get_secret_value()
            if kek == DEV_KEY_ENCRYPTION_KEY or len(kek) < 32:
                raise ValueError(
                    "production needs LOYALTY_KEY_ENCRYPTION_KEY set to a real secret of at least 32 characters"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit arguments, then LOYALTY_* variables, then the TOML file.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
