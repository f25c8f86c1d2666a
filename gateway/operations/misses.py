"""Earns whose member or tier this process has not cached, prepared together: with a million
members nearly every earn is one."""

from __future__ import annotations

from gateway.app.runtime import Runtime
from gateway.core.errors import ErrorCode, LoyaltyError, NotFound
from gateway.core.security import Caller
from gateway.operations.accept import Prepared


def prepare_earns(runtime: Runtime, requests: list[tuple[Caller, str, bool]]) -> list[Prepared | LoyaltyError]:
    """`accept.prepare_earn` for the (caller, member_id, self_signed) of several requests at
    once (the cache misses of concurrent earns of managed partners): their members read in one
    query and their tiers in one JSON-RPC batch (and each partner's earn terms, cached),
    instead of a query and a chain call each. A member not enrolled gets its NotFound in its
    place; an error of the database or the chain is raised for all."""
    found = runtime.member_addresses([member_id for _, member_id, _ in requests])
    tiers = runtime.tiers_of([address for address, _ in found.values()])
    terms = {c.partner_id: runtime.earn_terms(c.partner_id) for c, _, _ in requests if c.partner_id is not None}
    prepared: list[Prepared | LoyaltyError] = []
    for caller, member_id, self_signed in requests:
        member = found.get(member_id)
        if member is None:
            prepared.append(NotFound(f"no member {member_id}", code=ErrorCode.UNKNOWN_MEMBER))
            continue
        assert caller.partner_id is not None
        nonce = None if self_signed else runtime.partner_nonce(caller.partner_id)
        prepared.append(Prepared(member[0], tier=tiers[member[0]], nonce=nonce, terms=terms[caller.partner_id]))
    return prepared
