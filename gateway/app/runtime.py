"""The runtime container: the gateway's running parts in one place (settings, chain, ledger
contract, keys, database, group-commit writer) and the hot-path caches that ride with them.

It is opened by `gateway.app.bootstrap.open_runtime`; domain services take it as their first
argument. It imports no domain folder.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.app.cache import BoundedCache
from gateway.app.deployment import Deployment
from gateway.chain.backends import ChainBackend, EmbeddedChain
from gateway.chain.ledger import Ledger, Sender
from gateway.core.config import Settings
from gateway.core.errors import ConfigError, ErrorCode, NotFound
from gateway.core.security import Caller, decrypt_private_key
from gateway.db.models import Member, Partner
from gateway.db.writer import WriteQueue


@dataclass
class Runtime:
    settings: Settings
    data_dir: Path
    network: str
    chain: ChainBackend
    ledger: Ledger
    operator: Sender | None  # the contract's admin, if the gateway holds its key: onboards partners
    relayer: Sender  # pays gas and submits batches
    engine: Engine
    sessions: sessionmaker[Session]  # reads
    writes: sessionmaker[Session]  # write transactions (BEGIN IMMEDIATE on SQLite)
    deployment: Deployment
    write_engine: Engine | None = None
    writer: WriteQueue = field(init=False)
    operator_lock: threading.Lock = field(default_factory=threading.Lock)
    # Decrypted signing keys of managed partners and custodial members (a custodial member's
    # key is needed for each redemption): bounded like the member caches.
    _keys: BoundedCache[str, str] = field(init=False)
    KEY_CACHE_ENTRIES = 10_000  # each entry holds its keystore JSON (~0.5 KiB)
    # member address -> (tier index, monotonic time read). Earns quote points at the tier
    # without a chain read per request. The submitter re-reads the tiers of the members in
    # each mined batch (one JSON-RPC batch), and entries expire anyway (months roll over).
    # The quote is only a quote: the contract computes the points and the event is stored.
    _tiers: BoundedCache[str, tuple[int, float]] = field(init=False)
    TIER_TTL_SECONDS = 60.0
    # The earn terms the contract applies, read from the chain (not from the settings or the
    # partner's row: they change under notice, r2): the tier table's multipliers and each
    # partner's earn rate. Forgotten when a change applies (`forget_terms`: whoever applies it
    # here, and the programme watch for changes applied elsewhere), and re-read at least every
    # TERMS_TTL_SECONDS anyway. `_terms_generation` keeps a read that raced a forget from
    # storing the old terms.
    _multipliers: tuple[tuple[int, ...], float] | None = None
    _rates: dict[int, tuple[tuple[int, int], float]] = field(default_factory=dict)
    _terms_generation: int = 0
    TERMS_TTL_SECONDS = 60.0
    # Hot-path caches of rows that never change once written (members' addresses, partners'
    # names, currencies and keys) and of authenticated API keys (a short TTL, so a key revoked through another
    # gateway process stops working within seconds; this process forgets it at once).
    # The member, tier and key caches hold at most `settings.gateway.member_cache_entries`
    # entries each, the most recently used: memory does not grow with the coalition, and a
    # member not seen lately costs one database read and one chain call, as at start.
    _members: BoundedCache[str, tuple[str, bool]] = field(init=False)
    _partners: dict[int, Partner] = field(default_factory=dict)
    _callers: BoundedCache[str, tuple[Caller, float]] = field(init=False)
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
        self._tiers.put(address, (tier, time.monotonic()))
        return tier

    def tiers_of(self, addresses: list[str]) -> dict[str, int]:
        """`tier_of` for several members: those not cached read in one JSON-RPC batch."""
        tiers: dict[str, int] = {}
        missing: list[str] = []
        for address in dict.fromkeys(addresses):
            cached = self.cached_tier(address)
            if cached is None:
                missing.append(address)
            else:
                tiers[address] = cached
        if missing:
            read = self.ledger.views([("tierOf", (a,)) for a in missing])
            now = time.monotonic()
            for address, tier in zip(missing, read, strict=True):
                tiers[address] = int(tier)
                self._tiers.put(address, (int(tier), now))
        return tiers

    def earn_terms(self, partner_id: int) -> tuple[int, int, tuple[int, ...]]:
        """(rate points, per minor units, tier multipliers in basis points) as the contract has
        them now: cached, else read in one JSON-RPC batch."""
        cached = self.cached_earn_terms(partner_id)
        if cached is not None:
            return cached
        generation = self._terms_generation
        tiers, info = self.ledger.views([("tiers", ()), ("partner", (partner_id,))])
        multipliers = tuple(int(bps) for _, bps in tiers)
        rate = (int(info[2]), int(info[3]))
        with self._cache_lock:
            if generation == self._terms_generation:
                now = time.monotonic()
                self._multipliers, self._rates[partner_id] = (multipliers, now), (rate, now)
        return rate[0], rate[1], multipliers

    def cached_earn_terms(self, partner_id: int) -> tuple[int, int, tuple[int, ...]] | None:
        multipliers, rate = self._multipliers, self._rates.get(partner_id)
        now = time.monotonic()
        if multipliers is None or rate is None:
            return None
        if now - multipliers[1] >= self.TERMS_TTL_SECONDS or now - rate[1] >= self.TERMS_TTL_SECONDS:
            return None
        return rate[0][0], rate[0][1], multipliers[0]

    def forget_terms(self, *, tiers: bool = False) -> None:
        """After a change applied: earn terms and partners' rows are read again; with `tiers`
        (a new tier table) the members' tier indexes too."""
        with self._cache_lock:
            self._terms_generation += 1
            self._multipliers = None
            self._rates.clear()
            self._partners.clear()
        if tiers:
            self._tiers.clear()

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
                self._tiers.pop(address)
            return
        now = time.monotonic()
        for address, tier in zip(addresses, tiers, strict=True):
            self._tiers.put(address, (int(tier), now))

    def cached_caller(self, key_hash: str) -> Caller | None:
        cached = self._callers.get(key_hash)
        if cached is not None and time.monotonic() - cached[1] < self.CALLER_TTL_SECONDS:
            return cached[0]
        return None

    def remember_caller(self, key_hash: str, caller: Caller) -> None:
        self._callers.put(key_hash, (caller, time.monotonic()))

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
            cached = (row[0], bool(row[1]))
            self._members.put(member_id, cached)
        return cached

    def member_addresses(self, member_ids: list[str]) -> dict[str, tuple[str, bool]]:
        """`member_address` for several members: those not cached read in one query. Members
        not enrolled are left out (and not remembered)."""
        found: dict[str, tuple[str, bool]] = {}
        missing: list[str] = []
        for member_id in dict.fromkeys(member_ids):
            cached = self._members.get(member_id)
            if cached is None:
                missing.append(member_id)
            else:
                found[member_id] = cached
        if missing:
            with self.sessions() as session:
                rows = session.execute(
                    select(Member.member_id, Member.address, Member.custodial).where(Member.member_id.in_(missing))
                ).all()
            for member_id, address, custodial in rows:
                found[member_id] = (address, bool(custodial))
                self._members.put(member_id, found[member_id])
        return found

    def partner_terms(self, partner_id: int) -> Partner:
        """A partner's row (name, currency, signer, key), cached until `forget_terms` (a signer
        rotation changes it); `next_nonce` on this copy is stale, use `partner_nonce`. Its rate
        is not the earn's: see `earn_terms`."""
        cached = self._partners.get(partner_id)
        if cached is None:
            with self.sessions() as session:
                cached = session.get(Partner, partner_id)
                if cached is None:
                    raise NotFound(f"no partner {partner_id}", code=ErrorCode.UNKNOWN_PARTNER)
                session.expunge(cached)
            self._partners[partner_id] = cached
        return cached

    def cached_member(self, member_id: str) -> tuple[str, bool] | None:
        return self._members.get(member_id)

    def forget_member(self, member_id: str) -> None:
        """(r2) A member migrated to a new address: the one row that changes after enrolment.
        Other processes keep theirs until evicted; the submitter refuses what they sign for
        the old address (`member_migrated`) rather than send it."""
        self._members.pop(member_id)

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
        bound = self.settings.gateway.member_cache_entries
        self._members = BoundedCache(bound)
        self._tiers = BoundedCache(bound)
        self._keys = BoundedCache(min(bound, self.KEY_CACHE_ENTRIES))
        self._callers = BoundedCache(bound)

    @property
    def kek(self) -> str:
        return self.settings.key_encryption_key.get_secret_value()

    def private_key(self, encrypted: str) -> str:
        """Decrypts a stored key once and keeps it in memory for this process."""
        key = self._keys.get(encrypted)
        if key is None:
            key = decrypt_private_key(encrypted, self.kek)
            self._keys.put(encrypted, key)
        return key

    def close(self) -> None:
        self.writer.stop()
        self.engine.dispose()
        if self.write_engine is not None:
            self.write_engine.dispose()
        self.chain.close()
