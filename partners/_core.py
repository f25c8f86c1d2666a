"""The SDK's logic without I/O: each API call is a generator that yields HTTP calls and sleeps.

Longer than 400 lines: one sans-IO generator per API call; the sync and async clients drive
the same ones, so they cannot drift apart.

`PartnerClient` drives these generators with httpx.Client and time.sleep, `AsyncPartnerClient`
with httpx.AsyncClient and asyncio.sleep, so the two flavours share every request body,
signature, retry decision and error mapping and cannot drift apart.

A write's body is built and (for a self-custody partner) signed once, serialized once, and
given one Idempotency-Key before the first attempt; every retry sends those same bytes with
that same key, so the gateway answers a retried write with its first answer and never
applies it twice.
"""

from __future__ import annotations

import email.utils
import json
import random
import secrets
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from partners.errors import (
    EarnNotConfirmed,
    GatewayError,
    GatewayUnreachable,
    NotFound,
    OperationRejected,
    PartnerSdkError,
    PreparedRequest,
    WaitTimeout,
    error_from_response,
)
from partners.models import ActivityPage, EnrolledMember, KeyInfo, LedgerInfo, Member, Operation
from partners.redemption import MEMBER_AUTHORIZATION_SECONDS, MemberAuthorization, RedemptionRequest, utc_now_iso
from partners.signing import (
    CampaignEarnMessage,
    Domain,
    EarnMessage,
    Message,
    Receipt,
    ReverseMessage,
    earn_leaf,
    new_receipt_salt,
    sign,
)

T = TypeVar("T")

USER_AGENT = "coalition-partner-sdk/1"
# A partner's signature must outlive any queue the operation may wait in (a chain outage):
# an earn rejected for an expired deadline would leave its receipt id used up.
PARTNER_SIGNATURE_SECONDS = 90 * 86_400
# Failures after which the request may still have reached the gateway, or never did; both
# are safe to retry because the body and the Idempotency-Key stay the same.
RETRYABLE_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)


@dataclass(frozen=True)
class Call:
    """One HTTP request to the gateway; writes carry their serialized body and key."""

    method: str
    path: str
    body: bytes | None = None
    idempotency_key: str | None = None
    params: dict[str, Any] | None = None
    content_type: str = "application/json"  # of `body` (a batch file is CSV or JSON lines)

    def prepared(self) -> PreparedRequest | None:
        if self.body is None or self.idempotency_key is None:
            return None
        return PreparedRequest(self.method, self.path, self.body, self.idempotency_key)


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step = Call | Sleep
Flow = Generator[Step, Any, T]


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter; Retry-After wins when the gateway sends it."""

    attempts: int = 6  # in all, the first one included
    backoff: float = 0.2  # the first wait, doubled after each failure
    max_backoff: float = 5.0
    max_retry_after: float = 60.0
    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        ceiling = min(self.max_backoff, self.backoff * 2 ** (failures - 1))
        # Jitter, so that tills cut off together do not all come back in the same instant.
        return random.uniform(ceiling / 2, ceiling)


class SessionNonces:
    """Nonces for a self-custody partner's signatures: a random 128-bit prefix per client, then
    a counter.

    The ledger keeps a bitmap of used nonces per partner, 256 to a storage word: consecutive
    nonces share a word (cheaper gas than scattered random ones), and the random prefix keeps
    two tills or two runs of the same partner from ever choosing the same nonce.
    """

    def __init__(self) -> None:
        self._prefix = secrets.randbits(128) << 64
        self._next = 0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            nonce = self._prefix | self._next
            self._next += 1
        return nonce


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds, from either of its forms (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class RetryIn:
    """The answer says: try again after `seconds`."""

    seconds: float


@dataclass
class Core:
    """The state both clients share: key, policy, and what is cached from the gateway."""

    api_key: str
    signing_key: bytes | None = None
    partner_id: int | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    nonces: Callable[[], int] = field(default_factory=SessionNonces)
    signature_valid_for: int = PARTNER_SIGNATURE_SECONDS
    _ledger: LedgerInfo | None = None
    _addresses: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------ transport decisions

    def headers(self, call: Call) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.api_key}", "Accept": "application/json", "User-Agent": USER_AGENT}
        if call.body is not None:
            headers["Content-Type"] = call.content_type
        if call.idempotency_key is not None:
            headers["Idempotency-Key"] = call.idempotency_key
        return headers

    def answer(self, call: Call, response: httpx.Response, attempt: int) -> Any:
        """The decoded JSON of a success; RetryIn for a retryable failure with attempts left;
        raises the typed error otherwise."""
        status = response.status_code
        if 200 <= status < 300:
            if status == 204 or not response.content:
                return None
            try:
                return response.json()
            except ValueError as exc:
                raise GatewayError(
                    status, "invalid_response", "the answer is not JSON", request=call.prepared()
                ) from exc
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status in self.retry.retry_statuses and attempt < self.retry.attempts:
            return RetryIn(self.retry.delay(attempt, retry_after))
        try:
            payload = response.json()
        except ValueError:
            payload = None
        raise error_from_response(status, payload, retry_after=retry_after, request=call.prepared())

    def transport_failed(self, call: Call, exc: Exception, attempt: int) -> float:
        """How long to wait before the next attempt; raises once attempts are used up."""
        if attempt >= self.retry.attempts:
            raise GatewayUnreachable(
                f"{call.method} {call.path}: no answer after {attempt} attempts ({type(exc).__name__}: {exc})",
                request=call.prepared(),
                attempts=attempt,
            ) from exc
        return self.retry.delay(attempt)

    # ------------------------------------------------------------ cached facts

    def post(self, path: str, body: dict[str, Any], idempotency_key: str | None) -> Call:
        return Call("POST", path, _encode(body), idempotency_key or str(uuid.uuid4()))

    def key_info(self) -> Flow[KeyInfo]:
        info = KeyInfo.from_json((yield Call("GET", "/v1/api-keys/self")))
        if info.partner_id is not None and self.partner_id is None:
            self.partner_id = info.partner_id
        return info

    def own_partner_id(self) -> Flow[int]:
        if self.partner_id is None:
            info = yield from self.key_info()
            if info.partner_id is None:
                raise PartnerSdkError(f"this API key is a {info.role} key, not a partner's")
        assert self.partner_id is not None
        return self.partner_id

    def ledger(self) -> Flow[LedgerInfo]:
        if self._ledger is None:
            self._ledger = LedgerInfo.from_json((yield Call("GET", "/v1/ledger")))
        return self._ledger

    def domain(self) -> Flow[Domain]:
        return (yield from self.ledger()).domain

    def member_address(self, member_id: str) -> Flow[str]:
        """A member's address never changes once enrolled, so it is asked for once."""
        address = self._addresses.get(member_id)
        if address is None:
            address = (yield from self.member(member_id)).address
            if len(self._addresses) > 10_000:
                self._addresses.clear()
            self._addresses[member_id] = address
        return address

    # ------------------------------------------------------------ reads

    def member(self, member_id: str) -> Flow[Member]:
        member = Member.from_json((yield Call("GET", f"/v1/members/{_segment(member_id)}")))
        self._addresses.setdefault(member.member_id, member.address)
        return member

    def activity(self, member_id: str, cursor: int | None, limit: int) -> Flow[ActivityPage]:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        data = yield Call("GET", f"/v1/members/{_segment(member_id)}/activity", params=params)
        return ActivityPage.from_json(data)

    def operation(self, operation_id: str) -> Flow[Operation]:
        return Operation.from_json((yield Call("GET", f"/v1/operations/{_segment(operation_id)}")))

    def wait_for(self, operation_id: str, timeout: float, poll_interval: float = 0.1) -> Flow[Operation]:
        """Polls until the operation is confirmed (returned) or rejected (OperationRejected)."""
        deadline = time.monotonic() + timeout
        interval = poll_interval
        while True:
            op = yield from self.operation(operation_id)
            if op.status == "confirmed":
                return op
            if op.status == "rejected":
                raise OperationRejected(op)
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(op, timeout)
            yield Sleep(min(interval, left))
            interval = min(interval * 1.5, 2.0)

    # ------------------------------------------------------------ writes

    def enroll_member(
        self, member_id: str, address: str | None, pin: str | None, idempotency_key: str | None
    ) -> Flow[EnrolledMember]:
        body: dict[str, Any] = {"member_id": member_id}
        if address is not None:
            body["address"] = address
        if pin is not None:
            body["pin"] = pin
        enrolled = EnrolledMember.from_json((yield self.post("/v1/members", body, idempotency_key)))
        self._addresses[enrolled.member_id] = enrolled.address
        return enrolled

    def _accepted(self, call: Call, wait: bool, timeout: float, **known: Any) -> Flow[Operation]:
        op = Operation.from_json((yield call), **known)
        if wait:
            return (yield from self.wait_for(op.operation_id, timeout))
        return op

    def send(self, request: PreparedRequest, wait: bool, timeout: float) -> Flow[Operation]:
        call = Call(request.method, request.path, request.body, request.idempotency_key)
        return (yield from self._accepted(call, wait, timeout))

    def _partner_signed(self, domain: Domain, make: Callable[[int, int], Message]) -> dict[str, Any]:
        assert self.signing_key is not None
        nonce, deadline = self.nonces(), int(time.time()) + self.signature_valid_for
        signature = sign(domain, make(nonce, deadline), self.signing_key)
        return {"signature": signature.hex(), "nonce": nonce, "deadline": deadline}

    def earn(
        self,
        member_id: str,
        receipt_id: str,
        amount_minor: int,
        currency: str,
        issued_at: str | None,
        idempotency_key: str | None,
        wait: bool,
        timeout: float,
        campaign_id: int | None = None,
    ) -> Flow[Operation]:
        body: dict[str, Any] = {
            "member_id": member_id,
            "receipt_id": receipt_id,
            "amount_minor": amount_minor,
            "currency": currency,
        }
        if campaign_id is not None:  # (r2) one of the partner's campaigns
            body["campaign_id"] = campaign_id
        if self.signing_key is not None:
            # The signature covers the receipt's hash, so the receipt's time is fixed here.
            issued_at = issued_at or utc_now_iso()
            partner_id = yield from self.own_partner_id()
            domain = yield from self.domain()
            member = yield from self.member_address(member_id)
            salt = new_receipt_salt()
            body["receipt_salt"] = salt
            ref = Receipt(
                kind="earn",
                partner_id=partner_id,
                receipt_id=receipt_id,
                member_id=member_id,
                amount_minor=amount_minor,
                currency=currency,
                issued_at=issued_at,
                salt=salt,
            ).ref()
            body["partner_signature"] = self._partner_signed(
                domain,
                lambda n, d: (
                    CampaignEarnMessage(partner_id, member, amount_minor, campaign_id, ref, n, d)
                    if campaign_id is not None
                    else EarnMessage(partner_id, member, amount_minor, ref, n, d)
                ),
            )
        if issued_at is not None:
            body["issued_at"] = issued_at
        call = self.post("/v1/earn", body, idempotency_key)
        return (
            yield from self._accepted(
                call, wait, timeout, kind="earn", receipt_id=receipt_id, member_id=member_id, amount_minor=amount_minor
            )
        )

    def redeem(
        self,
        member_id: str,
        receipt_id: str,
        points: int,
        pin: str | None,
        authorization: MemberAuthorization | None,
        idempotency_key: str | None,
        wait: bool,
        timeout: float,
    ) -> Flow[Operation]:
        if (pin is None) == (authorization is None):
            raise ValueError("a redemption needs exactly one of pin= (custodial member) and authorization=")
        body: dict[str, Any] = {"member_id": member_id, "receipt_id": receipt_id, "points": points}
        if authorization is not None:
            asked = (authorization.member_id, authorization.receipt_id, authorization.points)
            if asked != (member_id, receipt_id, points):
                raise ValueError(f"the member authorized {asked}, not {(member_id, receipt_id, points)}")
            body["authorization"] = authorization.as_json()
            body["issued_at"] = authorization.issued_at
            if authorization.salt:
                body["receipt_salt"] = authorization.salt
        else:
            body["authorization"] = {"pin": pin}
        call = self.post("/v1/redemptions", body, idempotency_key)
        return (
            yield from self._accepted(
                call, wait, timeout, kind="redemption", receipt_id=receipt_id, member_id=member_id
            )
        )

    def redemption_request(
        self, member_id: str, receipt_id: str, points: int, valid_for: int | None
    ) -> Flow[RedemptionRequest]:
        partner_id = yield from self.own_partner_id()
        domain = yield from self.domain()
        address = yield from self.member_address(member_id)
        return RedemptionRequest.create(
            domain=domain,
            partner_id=partner_id,
            member_id=member_id,
            member_address=address,
            receipt_id=receipt_id,
            points=points,
            valid_for=MEMBER_AUTHORIZATION_SECONDS if valid_for is None else valid_for,
        )

    def find_earn(self, receipt_id: str, member_id: str | None, earn_operation_id: str | None) -> Flow[Operation]:
        """This partner's earn for `receipt_id`: by its operation id, or from the member's activity."""
        if earn_operation_id is not None:
            op = yield from self.operation(earn_operation_id)
            if op.kind not in ("earn", "award") or op.receipt_id != receipt_id:
                raise ValueError(f"operation {earn_operation_id} is not the earn of receipt {receipt_id}")
            return op
        if member_id is None:
            raise ValueError(
                "a self-custody partner signs the reversal over the earn's leaf: "
                "pass member_id= or earn_operation_id= to find the earn"
            )
        cursor: int | None = None
        while True:
            page = yield from self.activity(member_id, cursor, 200)
            for op in page.items:
                if op.kind == "earn" and op.receipt_id == receipt_id:
                    return op
            for op in page.items:  # (r2) an award of that receipt, when it has no earn
                if op.kind == "award" and op.receipt_id == receipt_id:
                    return op
            if page.next_cursor is None:
                raise NotFound(404, "unknown_receipt", f"no earn for receipt {receipt_id} of member {member_id}")
            cursor = page.next_cursor

    def reverse(
        self,
        receipt_id: str,
        amount_minor: int | None,
        points: int | None,
        reason: str,
        refund_id: str | None,
        member_id: str | None,
        earn_operation_id: str | None,
        issued_at: str | None,
        idempotency_key: str | None,
        wait: bool,
        timeout: float,
    ) -> Flow[Operation]:
        if (amount_minor is None) == (points is None):
            raise ValueError("a reversal takes back exactly one of amount_minor= (refunded money) and points=")
        body: dict[str, Any] = {"receipt_id": receipt_id, "reason": reason}
        if refund_id is not None:
            body["refund_id"] = refund_id
        if amount_minor is not None:
            body["amount_minor"] = amount_minor
        if points is not None:
            body["points"] = points
        if self.signing_key is not None:
            issued_at = issued_at or utc_now_iso()
            partner_id = yield from self.own_partner_id()
            domain = yield from self.domain()
            earn = yield from self.find_earn(receipt_id, member_id, earn_operation_id)
            if earn.status != "confirmed":
                raise EarnNotConfirmed(
                    409,
                    "earn_not_confirmed",
                    f"the earn for receipt {receipt_id} is {earn.status}, not confirmed yet",
                    {"operation_id": earn.operation_id},
                )
            if amount_minor is not None and not earn.amount_minor:
                raise ValueError("an award is reversed by points=, not by an amount")
            if earn.earn_month is None or earn.points is None or not earn.receipt_ref:
                raise PartnerSdkError("the gateway does not report the earn's month: it is older than this SDK")
            if earn.member_id is None:
                raise PartnerSdkError(f"the gateway did not say whose earn {earn.operation_id} is")
            taken = (
                points if points is not None else earn.points * int(amount_minor or 0) // int(earn.amount_minor or 1)
            )
            leaf = earn_leaf(
                partner_id=partner_id,
                # The address the earn was credited to: the member may have migrated since (r2).
                member=earn.member_address or (yield from self.member_address(earn.member_id)),
                receipt_ref=bytes.fromhex(earn.receipt_ref.removeprefix("0x")),
                spend=earn.amount_minor or 0,  # an award's leaf has spend 0
                points=earn.points,
                earn_month=earn.earn_month,
                bonus=earn.bonus or 0,  # (r2) a campaign earn's leaf has its bonus
            )
            salt = new_receipt_salt()
            body["receipt_salt"] = salt
            ref = Receipt(
                kind="reversal",
                partner_id=partner_id,
                receipt_id=refund_id or receipt_id,
                member_id=earn.member_id,
                amount_minor=amount_minor,
                currency=earn.currency if amount_minor else None,
                points=taken,
                issued_at=issued_at,
                extra={"original_receipt_id": receipt_id, "reason": reason},
                salt=salt,
            ).ref()
            body["partner_signature"] = self._partner_signed(
                domain, lambda n, d: ReverseMessage(partner_id, leaf, taken, ref, n, d)
            )
        if issued_at is not None:
            body["issued_at"] = issued_at
        call = self.post("/v1/reversals", body, idempotency_key)
        return (yield from self._accepted(call, wait, timeout, kind="reversal", receipt_id=refund_id or receipt_id))


def _segment(value: str) -> str:
    """A path segment, escaped: ids are the caller's strings."""
    return urllib.parse.quote(value, safe="")
