"""Programme changes under notice (SPEC section 3, r2) as the chain has them, and the watch
that follows them for one gateway process.

A change is read from `changeOf` and decoded (what it changes, for whom, from when). The
watch notices changes scheduled or applied by anyone (this gateway, `loyalty` commands
signed elsewhere, a third party applying a due change: `applyChange` is open to all),
applies due ones when asked to, and after a change applied makes the runtime read the earn
terms again (`Runtime.forget_terms`) and brings the partner's row up to date (its signer is
what the gateway checks self-signed operations against).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from eth_abi import decode
from eth_utils import to_checksum_address
from sqlalchemy.orm import Session

from gateway.app.runtime import Runtime
from gateway.chain.ledger import LedgerRevert
from gateway.chain.reads import ChainReads
from gateway.core.errors import ErrorCode, NotFound
from gateway.db.models import Partner
from partners.signing import address_of

log = logging.getLogger("gateway.console")

KINDS = {1: "expiry", 2: "tiers", 3: "point_value", 4: "rate", 5: "signer", 6: "prices", 7: "debt_policy"}
STATES = {1: "pending", 2: "applied", 3: "cancelled"}
PARTNER_KINDS = frozenset({"rate", "signer", "prices"})
# The ABI types of each kind's `data` (CoalitionPointsAdmin's `_schedule` calls).
_DATA_TYPES = {
    1: ["uint16"],
    2: ["(uint64,uint32)[]"],
    3: ["uint256", "bytes3"],
    4: ["uint32", "uint32"],
    5: ["address"],
    6: ["uint128", "uint128"],
    7: ["bool"],
}


def head(runtime: Runtime) -> tuple[int, int]:
    """(number, timestamp) of the latest block: the state and the clock changes are read at."""
    return ChainReads(runtime.chain).latest()


def decode_terms(kind: int, data: bytes) -> dict[str, Any]:
    """What a change sets, as JSON: `{"tiers": [...]}`, `{"earn_rate": {...}}`..."""
    types = _DATA_TYPES.get(kind)
    if types is None:
        return {}
    values = decode(types, bytes(data))
    if kind == 1:
        return {"expiry_months": int(values[0])}
    if kind == 2:
        return {"tiers": [{"threshold": int(t), "multiplier_bps": int(b)} for t, b in values[0]]}
    if kind == 3:
        return {"point_value": {"minor_units": int(values[0]), "currency": bytes(values[1]).decode()}}
    if kind == 4:
        return {"earn_rate": {"points": int(values[0]), "per_minor_units": int(values[1])}}
    if kind == 5:
        return {"signer_address": to_checksum_address(values[0])}
    if kind == 7:
        return {"debt_allowed": bool(values[0])}
    return {"issue_price": int(values[0]), "redemption_price": int(values[1])}


def describe(change_id: int, raw: Any, now: int) -> dict[str, Any]:
    """One `changeOf` answer as the API shows it; `seconds_left` and `due` for pending ones."""
    kind, state, partner_id, effective_at, data = raw
    pending = int(state) == 1
    return {
        "change_id": change_id,
        "kind": KINDS.get(int(kind), str(kind)),
        "partner_id": int(partner_id) or None,
        "state": STATES.get(int(state), "unknown"),
        "effective_at": int(effective_at),
        "seconds_left": max(0, int(effective_at) - now) if pending else None,
        "due": pending and int(effective_at) <= now,
        "terms": decode_terms(int(kind), bytes(data)),
    }


def read_changes(runtime: Runtime, ids: list[int], block: int, now: int) -> list[dict[str, Any]]:
    if not ids:
        return []
    raws = runtime.ledger.views([("changeOf", (i,)) for i in ids], block)
    return [describe(i, raw, now) for i, raw in zip(ids, raws, strict=True)]


def get_change(runtime: Runtime, change_id: int) -> dict[str, Any]:
    """One change at the latest block, or 404 `unknown_change`."""
    block, now = head(runtime)
    count = int(runtime.ledger.view("changeCount", block=block))
    if not 1 <= change_id <= count:
        raise NotFound(f"no change {change_id} on the ledger (there are {count})", code=ErrorCode.UNKNOWN_CHANGE)
    return {"block_number": block, **read_changes(runtime, [change_id], block, now)[0]}


def after_applied(runtime: Runtime, applied: list[dict[str, Any]]) -> None:
    """What a gateway process does once changes applied: reads the earn terms again (and the
    members' tiers after a new tier table), and updates the rows of the partners concerned."""
    if not applied:
        return
    runtime.forget_terms(tiers=any(c["kind"] == "tiers" for c in applied))
    partners = sorted({c["partner_id"] for c in applied if c["kind"] in PARTNER_KINDS and c["partner_id"]})
    if partners:
        with runtime.writes.begin() as session:
            sync_partner_rows(runtime, session, partners)


def sync_partner_rows(runtime: Runtime, session: Session, partner_ids: list[int]) -> None:
    """Copies signer and rate from the chain into the partners' rows. A managed partner whose
    signer is no longer the key the gateway keeps stops being managed: its operations then
    need the new key's signature (`signature_required`), never one the ledger would refuse."""
    for partner_id in partner_ids:
        row = session.get(Partner, partner_id, with_for_update=True)
        if row is None:
            continue  # on the ledger, not onboarded in this gateway
        info = runtime.ledger.partner(partner_id)
        signer = to_checksum_address(info["signer"])
        row.rate_points, row.rate_per_minor_units = int(info["rate_points"]), int(info["rate_per_minor_units"])
        if row.signer_address != signer:
            row.signer_address = signer
            if row.managed and row.encrypted_key and address_of(runtime.private_key(row.encrypted_key)) != signer:
                row.managed = False
    runtime.forget_terms()


@dataclass
class WatchStep:
    """What one look at the ledger found: changes first seen pending, changes that applied."""

    block_number: int
    new_pending: list[dict[str, Any]] = field(default_factory=list)
    applied: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ChangeWatch:
    """Follows the ledger's changes for one process: reads the new ones and those it last saw
    pending (one JSON-RPC batch), applies due ones with the operator's key when asked to."""

    runtime: Runtime
    seen: int = 0  # changes 1..seen have been read
    pending: set[int] = field(default_factory=set)

    def step(self, *, apply_due: bool = False) -> WatchStep:
        runtime = self.runtime
        block, now = head(runtime)
        count = int(runtime.ledger.view("changeCount", block=block))
        ids = sorted(self.pending | set(range(self.seen + 1, count + 1)))
        changes = read_changes(runtime, ids, block, now)
        found = WatchStep(block)
        for change in changes:
            first_look = change["change_id"] > self.seen
            if change["state"] == "pending" and first_look:
                found.new_pending.append(change)
            if change["state"] == "applied" and (first_look or change["change_id"] in self.pending):
                found.applied.append(change)
        self.pending = {c["change_id"] for c in changes if c["state"] == "pending"}
        self.seen = max(self.seen, count)
        if apply_due and runtime.operator is not None:
            for change in changes:
                if change["due"] and self._apply(change["change_id"]):
                    found.applied.append({**change, "state": "applied", "due": False, "seconds_left": None})
                    self.pending.discard(change["change_id"])
        after_applied(runtime, found.applied)
        return found

    def _apply(self, change_id: int) -> bool:
        runtime = self.runtime
        assert runtime.operator is not None
        try:
            with runtime.operator_lock:
                runtime.ledger.apply_change(runtime.operator, change_id)
        except LedgerRevert as exc:  # applied or cancelled meanwhile (another process, by hand)
            log.info("change %s not applied: %s", change_id, exc.error)
            return False
        log.info("change %s applied", change_id)
        return True
