"""The operator console's writes (SPEC section 6, r2), signed with the operator's key the
gateway holds: partner terms and programme changes under notice, cancelling and applying
them, allowance top-ups, suspension, signer rotation, pause, assigned tiers.

Without the key in the gateway (`gateway.operator_key_in_gateway = false`) each refuses with
409 `operator_key_absent`, naming the `loyalty` command that does the same signed elsewhere.
Every call is checked before it is sent (the ledger's own refusal, from gas estimation, comes
back as a clear error code too), so a refused request sends nothing and changes nothing.
"""

from __future__ import annotations

from typing import Any

from eth_utils import to_checksum_address
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.accounts.changes import after_applied, get_change, head, read_changes, sync_partner_rows
from gateway.app.runtime import Runtime
from gateway.chain.ledger import LedgerEvent, LedgerRevert, Sender
from gateway.core.errors import Conflict, ErrorCode, Invalid, LoyaltyError, NotFound
from gateway.db.models import Member
from gateway.points.rules import MAX_ALLOWANCE
from partners.signing import CompactSignature, RotateSignerMessage

MAX_TIERS = 8  # the ledger's MAX_TIERS
MAX_MULTIPLIER_BPS = 1_000_000  # 100x, the ledger's bound
MAX_EXPIRY_MONTHS = 120
# The ledger's refusals as the API's errors (a race past the checks below, or a check the
# gateway does not repeat): (error class, code).
_REFUSALS: dict[str, tuple[type[LoyaltyError], ErrorCode]] = {
    "InvalidTierTable": (Invalid, ErrorCode.INVALID_TIER_TABLE),
    "InvalidExpiryMonths": (Invalid, ErrorCode.INVALID_CHANGE),
    "InvalidRate": (Invalid, ErrorCode.INVALID_CHANGE),
    "InvalidSigner": (Invalid, ErrorCode.INVALID_CHANGE),
    "InvalidTier": (Invalid, ErrorCode.INVALID_TIER),
    "InvalidMember": (Invalid, ErrorCode.VALIDATION_ERROR),
    "UnknownPartner": (NotFound, ErrorCode.UNKNOWN_PARTNER),
    "UnknownChange": (Conflict, ErrorCode.CHANGE_NOT_PENDING),
    "ChangeNotDue": (Conflict, ErrorCode.CHANGE_NOT_DUE),
    "EnforcedPause": (Conflict, ErrorCode.ALREADY_PAUSED),
    "ExpectedPause": (Conflict, ErrorCode.NOT_PAUSED),
    "InvalidSignature": (Invalid, ErrorCode.INVALID_SIGNATURE),
    "SignatureExpired": (Invalid, ErrorCode.SIGNATURE_EXPIRED),
    "NonceAlreadyUsed": (Conflict, ErrorCode.NONCE_ALREADY_USED),
}


def operator_sender(runtime: Runtime, instead: str) -> Sender:
    if runtime.operator is None:
        raise Conflict(
            f"this gateway holds no operator key: run `{instead}` where the key is kept (docs/operators.md)",
            code=ErrorCode.OPERATOR_KEY_ABSENT,
            command=instead,
        )
    return runtime.operator


def send(runtime: Runtime, instead: str, function: str, *args: Any) -> tuple[list[LedgerEvent], int]:
    """Sends one operator call; returns its events and block. `instead` is the `loyalty`
    command that does the same where the operator's key is kept."""
    sender = operator_sender(runtime, instead)
    try:
        with runtime.operator_lock:
            receipt = runtime.ledger.call(sender, function, *args)
    except LedgerRevert as exc:
        refusal = _REFUSALS.get(exc.error.name)
        if refusal is None:
            raise
        kind, code = refusal
        raise kind(f"the ledger refused {function}: {exc.error}", code=code, ledger_error=exc.error.name) from exc
    return runtime.ledger.decode_logs(receipt), int(receipt["blockNumber"])


def _partner_on_chain(runtime: Runtime, partner_id: int, block: int | str = "latest") -> dict[str, Any]:
    info = runtime.ledger.partner(partner_id, block)
    if int(str(info["signer"]), 16) == 0:
        raise NotFound(f"no partner {partner_id} on the ledger", code=ErrorCode.UNKNOWN_PARTNER)
    return info


def _scheduled(runtime: Runtime, instead: str, function: str, *args: Any) -> dict[str, Any]:
    """Schedules a change; returns it as the chain has it after the transaction (applied at once
    when the ledger has no notice period, or no partner yet)."""
    events, block = send(runtime, instead, function, *args)
    change_id = next(int(e.args["changeId"]) for e in events if e.name == "ChangeScheduled")
    _, now = head(runtime)
    change = read_changes(runtime, [change_id], block, now)[0]
    after_applied(runtime, [change] if change["state"] == "applied" else [])
    return change


# ------------------------------------------------------------------ partners


def update_partner(
    runtime: Runtime, *, partner_id: int, earn_rate: tuple[int, int] | None, prices: tuple[int, int] | None
) -> dict[str, Any]:
    """Schedules a partner's new earn rate and/or settlement prices (one change each)."""
    if earn_rate is None and prices is None:
        raise Invalid("nothing to change: send earn_rate and/or prices", code=ErrorCode.INVALID_CHANGE)
    operator_sender(runtime, f"loyalty partner update {partner_id} --rpc URL --key-file FILE")
    _partner_on_chain(runtime, partner_id)
    instead = f"loyalty partner update {partner_id} --rpc URL --key-file FILE"
    changes = []
    if earn_rate is not None:
        changes.append(_scheduled(runtime, instead, "setPartnerRate", partner_id, *earn_rate))
    if prices is not None:
        changes.append(_scheduled(runtime, instead, "setPartnerPrices", partner_id, *prices))
    return {"partner_id": partner_id, "changes": changes}


def add_allowance(runtime: Runtime, *, partner_id: int, add: int) -> dict[str, Any]:
    """Adds `add` points to a partner's allowance. The ledger only sets an allowance, so the
    gateway reads it, sets it plus `add`, and then accounts for what the partner issued (or got
    back by reversals) between its read and its transaction, read from the partner's issued
    and reversed totals, correcting once more when that moved: the result is the allowance an
    atomic addition would have left."""
    instead = f"loyalty partner allowance {partner_id} --add {add} --rpc URL --key-file FILE"
    operator_sender(runtime, instead)
    block, _ = head(runtime)
    before = _partner_on_chain(runtime, partner_id, block)
    start = int(before["allowance"])
    if start + add > MAX_ALLOWANCE:
        raise Invalid(
            f"the allowance would pass the ledger's bound 2^128 - 1 (it is {start:,})", code=ErrorCode.INVALID_CHANGE
        )
    read, delta, tx_block = before, add, block
    for _ in range(3):  # one transaction, a second only when the partner issued meanwhile
        target = min(MAX_ALLOWANCE, max(0, int(read["allowance"]) + delta))
        _, tx_block = send(runtime, instead, "setAllowance", partner_id, target)
        after = runtime.ledger.partner(partner_id, tx_block)
        # Net points drawn since `read`: issues draw on the allowance, reversals give back.
        drawn = (int(after["issued"]) - int(read["issued"])) - (int(after["reversed"]) - int(read["reversed"]))
        wanted = min(MAX_ALLOWANCE, max(0, int(read["allowance"]) + delta - drawn))
        if int(after["allowance"]) == wanted:
            break
        read, delta = after, wanted - int(after["allowance"])
    final = runtime.ledger.partner(partner_id, tx_block)
    return {
        "partner_id": partner_id,
        "added": add,
        "allowance_before": start,
        "allowance_left": int(final["allowance"]),
        "block_number": tx_block,
    }


def set_active(runtime: Runtime, *, partner_id: int, active: bool) -> dict[str, Any]:
    """Suspends or resumes a partner at once (suspending can only stop issuance)."""
    verb = "resume" if active else "suspend"
    instead = f"loyalty partner {verb} {partner_id} --rpc URL --key-file FILE"
    operator_sender(runtime, instead)
    _partner_on_chain(runtime, partner_id)
    _, block = send(runtime, instead, "setPartnerActive", partner_id, active)
    return {"partner_id": partner_id, "active": active, "block_number": block}


def change_signer(
    runtime: Runtime,
    *,
    partner_id: int,
    signer: str,
    signature: tuple[str, int, int] | None,
) -> dict[str, Any]:
    """A partner's new signing key: at once with its current key's signature over
    `RotateSigner(partnerId, newSigner, nonce, deadline)` (`signature` = (hex, nonce,
    deadline)); without one, scheduled under notice (for a lost key), which the current key
    or the operator can cancel until it applies."""
    instead = f"loyalty partner rotate-signer {partner_id} {signer} --rpc URL --key-file FILE"
    operator_sender(runtime, instead)
    current = _partner_on_chain(runtime, partner_id)
    new_signer = to_checksum_address(signer)
    if new_signer == to_checksum_address(current["signer"]):
        raise Invalid(f"{new_signer} already signs for partner {partner_id}", code=ErrorCode.INVALID_CHANGE)
    if signature is None:
        change = _scheduled(runtime, instead, "requestSignerChange", partner_id, new_signer)
        return {"partner_id": partner_id, "signer_address": new_signer, "rotated": False, "change": change}
    text, nonce, deadline = signature
    try:
        compact = CompactSignature.from_bytes(bytes.fromhex(text.removeprefix("0x")))
    except ValueError as exc:
        raise Invalid("the signature could not be read", code=ErrorCode.INVALID_SIGNATURE) from exc
    message = RotateSignerMessage(partner_id, new_signer, nonce, deadline)
    send(runtime, instead, "rotateSigner", *_rotation_args(message, compact))
    with runtime.writes.begin() as session:
        sync_partner_rows(runtime, session, [partner_id])
    return {"partner_id": partner_id, "signer_address": new_signer, "rotated": True, "change": None}


def _rotation_args(m: RotateSignerMessage, s: CompactSignature) -> tuple[Any, ...]:
    return m.partner_id, m.new_signer, m.nonce, m.deadline, s.r, s.vs


# ------------------------------------------------------------------ the programme


def check_tier_table(rows: list[tuple[int, int]]) -> None:
    """The ledger's rules for a tier table, said in words (422 `invalid_tier_table`)."""
    problem = None
    if not 1 <= len(rows) <= MAX_TIERS:
        problem = f"a tier table has 1 to {MAX_TIERS} rows, not {len(rows)}"
    elif rows[0][0] != 0:
        problem = "the first tier starts at threshold 0 (every member has a tier)"
    elif any(b <= a for (a, _), (b, _) in zip(rows, rows[1:], strict=False)):
        problem = "thresholds must ascend strictly"
    elif any(not 1 <= bps <= MAX_MULTIPLIER_BPS for _, bps in rows):
        problem = f"multipliers are 1 to {MAX_MULTIPLIER_BPS:,} basis points (10,000 = 1x)"
    if problem:
        raise Invalid(f"tier table refused: {problem}", code=ErrorCode.INVALID_TIER_TABLE)


def schedule_programme(
    runtime: Runtime,
    *,
    tiers: list[tuple[int, int]] | None = None,
    expiry_months: int | None = None,
    point_value: tuple[int, str] | None = None,
    transfers_enabled: bool | None = None,
    debt_allowed: bool | None = None,
) -> dict[str, Any]:
    """Schedules programme-wide changes (one each; `debt_allowed` is the debt policy, r2);
    the transfers switch acts at once (the ledger does not schedule it)."""
    if (tiers, expiry_months, point_value, transfers_enabled, debt_allowed) == (None,) * 5:
        raise Invalid(
            "nothing to change: send tiers, expiry_months, point_value, debt_allowed and/or transfers_enabled",
            code=ErrorCode.INVALID_CHANGE,
        )
    instead = "loyalty programme change ... --rpc URL --key-file FILE"
    operator_sender(runtime, instead)
    if tiers is not None:
        check_tier_table(tiers)
    if expiry_months is not None and not 0 <= expiry_months <= MAX_EXPIRY_MONTHS:
        raise Invalid(f"expiry_months is 0 (never) to {MAX_EXPIRY_MONTHS}", code=ErrorCode.INVALID_CHANGE)
    changes = []
    if tiers is not None:
        changes.append(_scheduled(runtime, instead, "setTiers", tiers))
    if expiry_months is not None:
        changes.append(_scheduled(runtime, instead, "setExpiryMonths", expiry_months))
    if point_value is not None:
        changes.append(_scheduled(runtime, instead, "setPointValue", point_value[0], point_value[1].encode()))
    if debt_allowed is not None:
        changes.append(_scheduled(runtime, instead, "setDebtPolicy", debt_allowed))
    body: dict[str, Any] = {"changes": changes, "transfers_enabled": None}
    if transfers_enabled is not None:
        send(runtime, instead, "setTransfersEnabled", transfers_enabled)
        body["transfers_enabled"] = transfers_enabled
    return body


def cancel_change(runtime: Runtime, *, change_id: int) -> dict[str, Any]:
    instead = f"loyalty programme cancel {change_id} --rpc URL --key-file FILE"
    operator_sender(runtime, instead)
    change = get_change(runtime, change_id)
    if change["state"] != "pending":
        raise Conflict(f"change {change_id} is {change['state']}: only a pending change can be cancelled",
                       code=ErrorCode.CHANGE_NOT_PENDING, state=change["state"])  # fmt: skip
    send(runtime, instead, "cancelChange", change_id)
    return get_change(runtime, change_id)


def apply_change(runtime: Runtime, *, change_id: int) -> dict[str, Any]:
    """Applies a change whose notice period is over; 409 `change_not_due` before."""
    instead = f"loyalty programme apply {change_id} --rpc URL --key-file FILE"
    operator_sender(runtime, instead)
    change = get_change(runtime, change_id)
    if change["state"] != "pending":
        raise Conflict(f"change {change_id} is {change['state']}, not pending",
                       code=ErrorCode.CHANGE_NOT_PENDING, state=change["state"])  # fmt: skip
    if not change["due"]:
        raise Conflict(
            f"change {change_id} takes effect only from {change['effective_at']} "
            f"({change['seconds_left']} s from now): the notice period is not over",
            code=ErrorCode.CHANGE_NOT_DUE,
            effective_at=change["effective_at"],
            seconds_left=change["seconds_left"],
        )
    send(runtime, instead, "applyChange", change_id)
    applied = get_change(runtime, change_id)
    after_applied(runtime, [applied])
    return applied


def set_paused(runtime: Runtime, *, paused: bool) -> dict[str, Any]:
    verb = "pause" if paused else "unpause"
    instead = f"loyalty {verb} --rpc URL --key-file FILE"
    operator_sender(runtime, instead)
    if bool(runtime.ledger.view("paused")) == paused:
        code = ErrorCode.ALREADY_PAUSED if paused else ErrorCode.NOT_PAUSED
        raise Conflict(f"the ledger is {'already' if paused else 'not'} paused", code=code)
    _, block = send(runtime, instead, verb)
    return {"paused": paused, "block_number": block}


def assign_tier(runtime: Runtime, session: Session, *, member_id: str, tier: int, until: int) -> dict[str, Any]:
    """Gives a member at least `tier` until the timestamp `until` (0 withdraws it)."""
    instead = f"loyalty operator assign-tier ADDRESS {tier} --days N --rpc URL --key-file FILE"
    operator_sender(runtime, instead)
    address = session.scalar(select(Member.address).where(Member.member_id == member_id))
    if address is None:
        raise NotFound(f"no member {member_id}", code=ErrorCode.UNKNOWN_MEMBER)
    block, now = head(runtime)
    count = len(runtime.ledger.view("tiers", block=block))
    if not 0 <= tier < count:
        raise Invalid(f"tier {tier} is not in the tier table (0 to {count - 1})", code=ErrorCode.INVALID_TIER)
    if until != 0 and until <= now:
        raise Invalid(
            f"until ({until}) is not in the future (the chain's time is {now})", code=ErrorCode.INVALID_CHANGE
        )
    _, tx_block = send(runtime, instead, "assignTier", address, tier, until)
    runtime.forget_terms(tiers=True)  # the member's tier is read again
    return {
        "member_id": member_id,
        "address": address,
        "assigned_tier": tier if until else None,
        "until": until or None,
        "tier": int(runtime.ledger.tier_of(address, tx_block)),
        "block_number": tx_block,
    }
