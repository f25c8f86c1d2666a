"""The SDK's revision-2 operations (awards, refunds of redemptions, member migration) as sans-IO
flows over `Core`, driven by both clients like the flows of `partners._core`.

A self-custody partner signs awards and refunds here, with EIP-712 bound to the ledger's chain
id and contract address (`Core.domain`), over the same canonical receipt document the gateway
stores; the gateway only checks the signature. A refund's signature covers its redemption's
leaf, which this module recomputes from the redemption's on-chain commitment as the gateway
reports it, and checks against the leaf the gateway states: a gateway cannot make the partner
sign a refund of a redemption that is not its own or not the one named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from partners._core import Core, Flow, _segment
from partners.errors import NotFound, PartnerSdkError, RedemptionNotConfirmed
from partners.models import Operation
from partners.redemption import utc_now_iso
from partners.signing import AwardMessage, Receipt, RefundMessage, new_receipt_salt, redemption_leaf

# SPEC section 2's award reasons and the ledger's codes for them.
AWARD_REASONS = {
    "bonus": 1,
    "goodwill": 2,
    "referral": 3,
    "signup": 4,
    "employee": 5,
    "correction": 6,
    "retro_claim": 7,
}


@dataclass(frozen=True)
class MigrationAuthorization:
    """A self-custody member's signature (from its wallet) over
    `Migrate(from, to, nonce, deadline)`: see `partners.signing.MigrateMessage`."""

    signature: str
    nonce: int
    deadline: int

    def as_json(self) -> dict[str, Any]:
        return {"signature": self.signature, "nonce": self.nonce, "deadline": self.deadline}


def award(
    core: Core,
    member_id: str,
    receipt_id: str,
    points: int,
    reason: str,
    note: str | None,
    issued_at: str | None,
    idempotency_key: str | None,
    wait: bool,
    timeout: float,
) -> Flow[Operation]:
    if reason not in AWARD_REASONS:
        raise ValueError(f"reason must be one of {', '.join(AWARD_REASONS)}, not {reason!r}")
    body: dict[str, Any] = {"member_id": member_id, "receipt_id": receipt_id, "points": points, "reason": reason}
    if note is not None:
        body["note"] = note
    if core.signing_key is not None:
        issued_at = issued_at or utc_now_iso()
        partner_id = yield from core.own_partner_id()
        domain = yield from core.domain()
        # Read afresh, not from the cache: awards are rare and a member may have migrated.
        address = (yield from core.member(member_id)).address
        salt = new_receipt_salt()
        body["receipt_salt"] = salt
        extra = {"reason": reason, **({"note": note} if note is not None else {})}
        ref = Receipt(
            kind="award",
            partner_id=partner_id,
            receipt_id=receipt_id,
            member_id=member_id,
            points=points,
            issued_at=issued_at,
            extra=extra,
            salt=salt,
        ).ref()
        code = AWARD_REASONS[reason]
        body["partner_signature"] = core._partner_signed(
            domain,
            lambda n, d: AwardMessage(partner_id, address, points, code, ref, n, d),
        )
    if issued_at is not None:
        body["issued_at"] = issued_at
    call = core.post("/v1/awards", body, idempotency_key)
    return (
        yield from core._accepted(
            call, wait, timeout, kind="award", receipt_id=receipt_id, member_id=member_id, reason=reason
        )
    )


def find_redemption(
    core: Core, receipt_id: str, member_id: str | None, redemption_operation_id: str | None
) -> Flow[Operation]:
    """This partner's redemption of `receipt_id`: by its operation id, or in the member's activity."""
    if redemption_operation_id is not None:
        op = yield from core.operation(redemption_operation_id)
        if op.kind != "redemption" or op.receipt_id != receipt_id:
            raise ValueError(f"operation {redemption_operation_id} is not the redemption of receipt {receipt_id}")
        return op
    if member_id is None:
        raise ValueError(
            "a self-custody partner signs the refund over the redemption's leaf: "
            "pass member_id= or redemption_operation_id= to find the redemption"
        )
    cursor: int | None = None
    while True:
        page = yield from core.activity(member_id, cursor, 200)
        for op in page.items:
            if op.kind == "redemption" and op.receipt_id == receipt_id:
                return op
        if page.next_cursor is None:
            raise NotFound(404, "unknown_redemption", f"no redemption for receipt {receipt_id} of member {member_id}")
        cursor = page.next_cursor


def redemption_leaf_of(partner_id: int, op: Operation) -> bytes:
    """The redemption's leaf, recomputed from its reported commitment and checked against the
    leaf the gateway states."""
    record = op.redemption
    if op.status != "confirmed" or record is None:
        raise RedemptionNotConfirmed(
            409,
            "redemption_not_confirmed",
            f"the redemption for receipt {op.receipt_id} is {op.status}, not confirmed yet",
            {"operation_id": op.operation_id},
        )
    if op.partner_id != partner_id or op.member_address is None or op.points is None or not op.receipt_ref:
        raise PartnerSdkError(f"operation {op.operation_id} is not a redemption at this partner the SDK can refund")
    leaf = redemption_leaf(
        partner_id=partner_id,
        member=op.member_address,
        receipt_ref=bytes.fromhex(op.receipt_ref.removeprefix("0x")),
        points=op.points,
        expiry_month=int(record["expiry_month"]),
        batch_id=int(record["batch_id"]),
        index=int(record["index"]),
    )
    if "0x" + leaf.hex() != str(record.get("leaf", "")).lower():
        raise PartnerSdkError(f"the gateway's commitment of redemption {op.operation_id} does not add up")
    return leaf


def refund(
    core: Core,
    redemption_receipt_id: str,
    receipt_id: str,
    points: int,
    reason: str,
    member_id: str | None,
    redemption_operation_id: str | None,
    issued_at: str | None,
    idempotency_key: str | None,
    wait: bool,
    timeout: float,
) -> Flow[Operation]:
    body: dict[str, Any] = {
        "redemption_receipt_id": redemption_receipt_id,
        "receipt_id": receipt_id,
        "points": points,
        "reason": reason,
    }
    if core.signing_key is not None:
        issued_at = issued_at or utc_now_iso()
        partner_id = yield from core.own_partner_id()
        domain = yield from core.domain()
        redemption = yield from find_redemption(core, redemption_receipt_id, member_id, redemption_operation_id)
        leaf = redemption_leaf_of(partner_id, redemption)
        salt = new_receipt_salt()
        body["receipt_salt"] = salt
        ref = Receipt(
            kind="refund",
            partner_id=partner_id,
            receipt_id=receipt_id,
            member_id=str(redemption.member_id),
            points=points,
            issued_at=issued_at,
            extra={"redemption_receipt_id": redemption_receipt_id, "reason": reason},
            salt=salt,
        ).ref()
        body["partner_signature"] = core._partner_signed(
            domain,
            lambda n, d: RefundMessage(partner_id, leaf, points, ref, n, d),
        )
    if issued_at is not None:
        body["issued_at"] = issued_at
    call = core.post("/v1/refunds", body, idempotency_key)
    return (yield from core._accepted(call, wait, timeout, kind="refund", receipt_id=receipt_id))


def migrate_member(
    core: Core,
    member_id: str,
    address: str,
    pin: str | None,
    authorization: MigrationAuthorization | None,
    idempotency_key: str | None,
    wait: bool,
    timeout: float,
) -> Flow[Operation]:
    if (pin is None) == (authorization is None):
        raise ValueError("a migration needs exactly one of pin= (custodial member) and authorization=")
    auth = {"pin": pin} if authorization is None else authorization.as_json()
    call = core.post(
        f"/v1/members/{_segment(member_id)}/migrate", {"address": address, "authorization": auth}, idempotency_key
    )
    core._addresses.pop(member_id, None)  # the member's address is about to change
    op = yield from core._accepted(call, wait, timeout, kind="migration", member_id=member_id)
    core._addresses.pop(member_id, None)
    return op
