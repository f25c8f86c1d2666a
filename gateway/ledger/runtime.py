"""The gateway's running parts in one place: settings, chain, ledger contract, keys, database.

`open_runtime` is what `loyalty init` and `loyalty serve` call: on an empty data directory it
deploys the ledger, creates the database and writes the first admin key; afterwards it opens
what is there.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.chain.backends import ChainBackend, EmbeddedChain, RpcChain, anvil_dev_keys
from gateway.chain.ledger import Ledger, Sender
from gateway.config import Settings
from gateway.db.models import ApiKey, Member, Partner
from gateway.db.session import database_url, make_engine, make_sessionmaker, migrate
from gateway.errors import ConfigError, NotFound
from gateway.ledger.writer import WriteQueue
from gateway.security import decrypt_private_key, new_api_key

ANVIL_CHAIN_ID = 31337


@dataclass
class Runtime:
    settings: Settings
    data_dir: Path
    network: str
    chain: ChainBackend
    ledger: Ledger
    operator: Sender  # the contract's admin: onboards partners
    relayer: Sender  # pays gas and submits batches
    engine: Engine
    sessions: sessionmaker[Session]  # reads
    writes: sessionmaker[Session]  # write transactions (BEGIN IMMEDIATE on SQLite)
    deployment: dict[str, object]
    write_engine: Engine | None = None
    writer: WriteQueue = field(init=False)
    operator_lock: threading.Lock = field(default_factory=threading.Lock)
    _keys: dict[str, str] = field(default_factory=dict)
    # member address -> (tier index, monotonic time read). Earns quote points at the tier
    # without a chain read per request. The submitter re-reads the tiers of the members in
    # each mined batch (one JSON-RPC batch), and entries expire anyway (months roll over).
    # The quote is only a quote: the contract computes the points and the event is stored.
    _tiers: dict[str, tuple[int, float]] = field(default_factory=dict)
    TIER_TTL_SECONDS = 60.0
    # Hot-path caches of rows that never change once written (members' addresses, partners'
    # terms) and of authenticated API keys (a short TTL, so a key revoked through another
    # gateway process stops working within seconds; this process forgets it at once).
    _members: dict[str, tuple[str, bool]] = field(default_factory=dict)
    _partners: dict[int, Partner] = field(default_factory=dict)
    _callers: dict[str, tuple[object, float]] = field(default_factory=dict)
    CALLER_TTL_SECONDS = 5.0
    # Managed partners' signature nonces, reserved from the database in blocks: the contract's
    # nonces are an unordered bitmap, so a block left unused after a crash costs nothing,
    # while a nonce handed out twice would make a 202 fail on-chain.
    _nonce_blocks: dict[int, tuple[int, int]] = field(default_factory=dict)
    NONCE_BLOCK = 1_000
    _cache_lock: threading.Lock = field(default_factory=threading.Lock)
    # The latest block time seen (the submitter notes each mined batch's block; whoever moves
    # a development chain's clock notes it too): deadlines count from it, see service.
    chain_time: int = 0
    # Set when this process accepts a write: wakes the submitter at once instead of polling.
    work_ready: threading.Event = field(default_factory=threading.Event)

    def tier_of(self, address: str) -> int:
        cached = self.cached_tier(address)
        if cached is not None:
            return cached
        tier = self.ledger.tier_of(address)
        self._tiers[address] = (tier, time.monotonic())
        return tier

    def chain_clock(self) -> int:
        """The latest block time known: read from the embedded chain itself (in-process, and
        its clock may be moved by hand), else the latest block the submitter saw."""
        if isinstance(self.chain, EmbeddedChain):
            self.chain_time = max(self.chain_time, self.chain.latest_timestamp())
        return self.chain_time

    def cached_tier(self, address: str) -> int | None:
        cached = self._tiers.get(address)
        if cached is not None and time.monotonic() - cached[1] < self.TIER_TTL_SECONDS:
            return cached[0]
        return None

    def refresh_tiers(self, addresses: list[str], block: int | str = "latest") -> None:
        """Re-reads the tiers of these members in one round trip (after their batch was mined)."""
        if not addresses:
            return
        try:
            tiers = self.ledger.views([("tierOf", (a,)) for a in addresses], block)
        except Exception:  # noqa: BLE001 - a failed refresh only means the next earn reads the chain
            for address in addresses:
                self._tiers.pop(address, None)
            return
        now = time.monotonic()
        for address, tier in zip(addresses, tiers, strict=True):
            self._tiers[address] = (int(tier), now)

    def cached_caller(self, key_hash: str) -> object | None:
        cached = self._callers.get(key_hash)
        if cached is not None and time.monotonic() - cached[1] < self.CALLER_TTL_SECONDS:
            return cached[0]
        return None

    def remember_caller(self, key_hash: str, caller: object) -> None:
        self._callers[key_hash] = (caller, time.monotonic())

    def forget_callers(self) -> None:
        self._callers.clear()

    def member_address(self, member_id: str) -> tuple[str, bool] | None:
        """(address, custodial) of an enrolled member: both are fixed at enrolment."""
        cached = self._members.get(member_id)
        if cached is None:
            with self.sessions() as session:
                row = session.execute(
                    select(Member.address, Member.custodial).where(Member.member_id == member_id)
                ).first()
            if row is None:
                return None  # not cached: the member may be enrolled a moment later
            cached = self._members[member_id] = (row[0], bool(row[1]))
        return cached

    def partner_terms(self, partner_id: int) -> Partner:
        """A partner's row as onboarded (name, currency, rate, signer, key): none of it changes
        afterwards; `next_nonce` on this copy is stale, use `partner_nonce`."""
        cached = self._partners.get(partner_id)
        if cached is None:
            with self.sessions() as session:
                cached = session.get(Partner, partner_id)
                if cached is None:
                    raise NotFound(f"no partner {partner_id}", code="unknown_partner")
                session.expunge(cached)
            self._partners[partner_id] = cached
        return cached

    def cached_member(self, member_id: str) -> tuple[str, bool] | None:
        return self._members.get(member_id)

    def reserved_nonce(self, partner_id: int) -> int | None:
        """A nonce from this process's reserved block, or None when the block is used up."""
        with self._cache_lock:
            start, end = self._nonce_blocks.get(partner_id, (0, 0))
            if start >= end:
                return None
            self._nonce_blocks[partner_id] = (start + 1, end)
            return start

    def partner_nonce(self, partner_id: int) -> int:
        """A fresh signature nonce for a managed partner, never handed out before."""
        with self._cache_lock:
            start, end = self._nonce_blocks.get(partner_id, (0, 0))
            if start >= end:
                with self.writes.begin() as session:
                    partner = session.get(Partner, partner_id, with_for_update=True)
                    if partner is None:
                        raise ConfigError(f"no partner {partner_id}")
                    start = int(partner.next_nonce)
                    end = start + self.NONCE_BLOCK
                    partner.next_nonce = end
            self._nonce_blocks[partner_id] = (start + 1, end)
            return start

    def __post_init__(self) -> None:
        # Not started here: `create_app` starts it; unstarted, each write is its own transaction.
        self.writer = WriteQueue(self.writes)

    @property
    def kek(self) -> str:
        return self.settings.key_encryption_key.get_secret_value()

    def private_key(self, encrypted: str) -> str:
        """Decrypts a stored key once and keeps it in memory for this process."""
        if encrypted not in self._keys:
            self._keys[encrypted] = decrypt_private_key(encrypted, self.kek)
        return self._keys[encrypted]

    def close(self) -> None:
        self.writer.stop()
        self.engine.dispose()
        if self.write_engine is not None:
            self.write_engine.dispose()
        self.chain.close()


def open_chain(settings: Settings, network: str, data_dir: Path | None) -> ChainBackend:
    """A network name from the settings, or an http(s):// JSON-RPC URL."""
    timeout = settings.gateway.rpc_timeout_seconds
    if network.startswith(("http://", "https://")):
        return RpcChain(network, timeout=timeout)
    net = settings.networks.get(network)
    if net is None:
        raise ConfigError(f"unknown network {network!r}; known: {', '.join(settings.networks)} or a URL")
    if net.kind == "embedded":
        return EmbeddedChain(data_dir / "chain.sqlite" if data_dir else None)
    if not net.rpc_url:
        raise ConfigError(f"network {network!r} has no rpc_url")
    return RpcChain(net.rpc_url, timeout=timeout)


def operator_key(settings: Settings, chain: ChainBackend) -> str:
    """The operator's key: from settings, or a development chain's own funded account."""
    if settings.deployer_key is not None:
        return settings.deployer_key.get_secret_value()
    if settings.env == "development":
        if chain.dev_keys:
            return chain.dev_keys[0]
        if chain.chain_id == ANVIL_CHAIN_ID:
            return anvil_dev_keys()[0]  # a local anvil node: its public development account
    raise ConfigError("set LOYALTY_DEPLOYER_KEY: this network has no development account")


def relayer_key(settings: Settings, chain: ChainBackend) -> str:
    if settings.relayer_key is not None:
        return settings.relayer_key.get_secret_value()
    if settings.env == "development":
        if chain.dev_keys:
            return chain.dev_keys[1]
        if chain.chain_id == ANVIL_CHAIN_ID:
            return anvil_dev_keys()[1]
    return operator_key(settings, chain)


def open_runtime(settings: Settings, *, data_dir: Path, network: str | None = None, log: bool = True) -> Runtime:
    data_dir.mkdir(parents=True, exist_ok=True)
    record_path = data_dir / "deployment.json"
    record: dict[str, object] | None = json.loads(record_path.read_text()) if record_path.exists() else None
    network = network or (str(record["network"]) if record else "embedded")
    chain = open_chain(settings, network, data_dir)
    tip = settings.gateway.priority_fee_wei
    operator = Sender(chain.w3, operator_key(settings, chain), priority_fee=tip)
    relayer = Sender(chain.w3, relayer_key(settings, chain), priority_fee=tip)
    if record is None:
        ledger = Ledger.deploy(operator, settings.coalition)
        record = ledger.deployment_record(network=network)
        record_path.write_text(json.dumps(record, indent=2) + "\n")
        if log:
            print(f"deployed the ledger at {ledger.address} on chain {ledger.chain_id}")
    else:
        if int(str(record["chain_id"])) != chain.chain_id:
            raise ConfigError(f"{record_path} is for chain {record['chain_id']}, the network is {chain.chain_id}")
        ledger = Ledger(chain.w3, str(record["address"]))
        ledger.deployment_block = int(str(record["deployment_block"]))
    url = database_url(data_dir, settings.database_url)
    migrate(url)
    engine = make_engine(url)
    write_engine = make_engine(url, writer=True) if url.startswith("sqlite") else engine
    runtime = Runtime(
        settings,
        data_dir,
        network,
        chain,
        ledger,
        operator,
        relayer,
        engine,
        make_sessionmaker(engine),
        make_sessionmaker(write_engine),
        record,
        write_engine if write_engine is not engine else None,
    )
    runtime.chain_time = chain.latest_timestamp()
    _first_admin_key(runtime, log=log)
    _check_key_encryption_key(runtime)
    return runtime


def _check_key_encryption_key(runtime: Runtime) -> None:
    """Refuses to start when the key-encryption key does not open the stored keys: better now
    than at the first managed earn."""
    with runtime.sessions() as session:
        sample = session.scalar(select(Partner.encrypted_key).where(Partner.encrypted_key.is_not(None)).limit(1))
        sample = sample or session.scalar(
            select(Member.encrypted_key).where(Member.encrypted_key.is_not(None)).limit(1)
        )
    if sample is None:
        return
    try:
        runtime.private_key(sample)
    except Exception as exc:  # noqa: BLE001 - any failure means the wrong key
        runtime.close()
        raise ConfigError(
            "LOYALTY_KEY_ENCRYPTION_KEY does not open the keys stored in this database (a different key?)"
        ) from exc


def _first_admin_key(runtime: Runtime, *, log: bool) -> None:
    path = runtime.data_dir / "admin.key"
    with runtime.writes.begin() as session:
        if session.scalar(select(ApiKey).where(ApiKey.role == "admin").limit(1)) is not None:
            return
        key_id, key, key_hash = new_api_key()
        session.add(ApiKey(id=key_id, key_hash=key_hash, role="admin"))
        # Written before the commit: if the write fails, no unknowable admin key exists.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key + "\n")
        os.chmod(path, 0o600)
    if log:
        print(f"the first admin API key is in {path} (mode 0600)")
