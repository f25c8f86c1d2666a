"""Typed clients of the gateway's HTTP API (SPEC section 6) for partners' tills and web shops.

Longer than 400 lines: the sync and the async client side by side, method for method the
same surface.

    from partners.client import PartnerClient

    with PartnerClient("https://gateway.example", api_key) as client:
        op = client.earn("card-0042", "till-7/0193", 1250, "EUR", wait=True)

`PartnerClient` is synchronous, `AsyncPartnerClient` has the same methods as coroutines.
Give `signing_key` when the partner keeps its own key (self-custody): earns, reversals,
awards and refunds are then signed here with EIP-712 and the gateway only checks the signature. Every write
carries an Idempotency-Key and is retried (same key, same bytes) on timeouts, dropped
connections, 429 and 5xx, so a retry never applies anything twice. Refusals raise the
typed errors of `partners.errors`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from partners import _campaigns, _programme, batches
from partners._campaigns import Campaign
from partners._core import (
    RETRYABLE_ERRORS,
    Call,
    Core,
    Flow,
    RetryIn,
    RetryPolicy,
    SessionNonces,
    Sleep,
    T,
)
from partners._programme import MigrationAuthorization
from partners.batches import BatchStatus, BatchSubmitted
from partners.errors import PreparedRequest
from partners.models import ActivityPage, EnrolledMember, KeyInfo, LedgerInfo, Member, Operation
from partners.redemption import MemberAuthorization, RedemptionRequest
from partners.signing import address_of

__all__ = ["AsyncPartnerClient", "Campaign", "MigrationAuthorization", "PartnerClient", "RetryPolicy", "SessionNonces"]

DEFAULT_TIMEOUT = 10.0
DEFAULT_WAIT = 60.0


def _key_bytes(signing_key: bytes | str | None) -> bytes | None:
    if signing_key is None or isinstance(signing_key, bytes):
        return signing_key
    return bytes.fromhex(signing_key.removeprefix("0x"))


class _Base:
    """Construction shared by both flavours."""

    def __init__(
        self,
        api_key: str,
        signing_key: bytes | str | None,
        partner_id: int | None,
        retry: RetryPolicy | None,
        nonces: Callable[[], int] | None,
        signature_valid_for: int | None,
    ) -> None:
        key = _key_bytes(signing_key)
        self._core = Core(api_key=api_key, signing_key=key, partner_id=partner_id, retry=retry or RetryPolicy())
        if nonces is not None:
            self._core.nonces = nonces
        if signature_valid_for is not None:
            self._core.signature_valid_for = signature_valid_for
        self.signer_address: str | None = address_of(key) if key is not None else None
        """The partner's signing address when the client signs (self-custody), else None."""


class PartnerClient(_Base):
    """Synchronous client; one instance may be shared by the threads of a till server."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        signing_key: bytes | str | None = None,
        partner_id: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        nonces: Callable[[], int] | None = None,
        signature_valid_for: int | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`signing_key`: the partner's private key (hex or bytes) for self-custody signing.
        `partner_id`: saves one request when known. `nonces`: a callable giving fresh
        signature nonces (default: `SessionNonces`). `transport`: an httpx transport, e.g.
        with proxies or client certificates."""
        super().__init__(api_key, signing_key, partner_id, retry, nonces, signature_valid_for)
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------ driver

    def _send(self, call: Call) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(
                    call.method, call.path, content=call.body, params=call.params, headers=self._core.headers(call)
                )
            except RETRYABLE_ERRORS as exc:
                delay = self._core.transport_failed(call, exc, attempt)
            else:
                result = self._core.answer(call, response, attempt)
                if not isinstance(result, RetryIn):
                    return result
                delay = result.seconds
            time.sleep(delay)

    def _run(self, flow: Flow[T]) -> T:
        reply: Any = None
        try:
            while True:
                step = flow.send(reply)
                if isinstance(step, Sleep):
                    time.sleep(step.seconds)
                    reply = None
                else:
                    reply = self._send(step)
        except StopIteration as done:
            result: T = done.value
            return result
        finally:
            flow.close()

    # ------------------------------------------------------------ reads

    def ledger(self) -> LedgerInfo:
        """Chain id, contract address, deployment block and ABI (GET /v1/ledger)."""
        return self._run(self._core.ledger())

    def whoami(self) -> KeyInfo:
        """The API key's id, role and partner."""
        return self._run(self._core.key_info())

    def member(self, member_id: str) -> Member:
        """Balance, tier, qualifying points and expiry schedule, read from the chain."""
        return self._run(self._core.member(member_id))

    def activity(self, member_id: str, *, cursor: int | None = None, limit: int = 50) -> ActivityPage:
        """The member's operations at this partner, newest first."""
        return self._run(self._core.activity(member_id, cursor, limit))

    def operation(self, operation_id: str) -> Operation:
        return self._run(self._core.operation(operation_id))

    def wait_for(self, operation_id: str, timeout: float = DEFAULT_WAIT) -> Operation:
        """Polls until the operation is confirmed; raises OperationRejected or WaitTimeout."""
        return self._run(self._core.wait_for(operation_id, timeout))

    # ------------------------------------------------------------ writes

    def enroll_member(
        self,
        member_id: str,
        *,
        address: str | None = None,
        pin: str | None = None,
        idempotency_key: str | None = None,
    ) -> EnrolledMember:
        """With `address`: a self-custody member. Without: a custodial one, which needs `pin`."""
        return self._run(self._core.enroll_member(member_id, address, pin, idempotency_key))

    def earn(
        self,
        member_id: str,
        receipt_id: str,
        amount_minor: int,
        currency: str,
        *,
        issued_at: str | None = None,
        idempotency_key: str | None = None,
        wait: bool = False,
        timeout: float = DEFAULT_WAIT,
        campaign_id: int | None = None,
    ) -> Operation:
        """Issues points for a purchase of `amount_minor` (minor units of `currency`); with
        `campaign_id` (r2), naming one of the partner's campaigns (`bonus`: its bonus, in `points`).

        Returns the accepted operation, or with `wait=True` the confirmed one."""
        return self._run(
            self._core.earn(
                member_id, receipt_id, amount_minor, currency, issued_at, idempotency_key, wait, timeout, campaign_id
            )
        )

    def create_campaign(
        self,
        *,
        starts_at: datetime | str | int,
        ends_at: datetime | str | int,
        budget: int,
        name: str | None = None,
        multiplier_bps: int = 0,
        fixed_bonus: int = 0,
        min_spend_minor: int = 0,
        tiers: list[int] | None = None,
        idempotency_key: str | None = None,
    ) -> Campaign:
        """Registers a campaign (r2): from `starts_at` to `ends_at` (aware datetimes, RFC 3339 or
        unix seconds), a bonus of base points x `multiplier_bps` / 10,000 + `fixed_bonus` per
        earn naming it of at least `min_spend_minor`, for members of `tiers` (all by default),
        within `budget` points. Answers once it is on-chain."""
        return self._run(
            _campaigns.create_campaign(
                self._core,
                starts_at=starts_at,
                ends_at=ends_at,
                budget=budget,
                name=name,
                multiplier_bps=multiplier_bps,
                fixed_bonus=fixed_bonus,
                min_spend_minor=min_spend_minor,
                tiers=tiers,
                idempotency_key=idempotency_key,
            )
        )

    def campaigns(self) -> list[Campaign]:
        return self._run(_campaigns.campaigns(self._core))

    def campaign(self, campaign_id: int) -> Campaign:
        return self._run(_campaigns.campaign(self._core, campaign_id))

    def redeem(
        self,
        member_id: str,
        receipt_id: str,
        points: int,
        *,
        pin: str | None = None,
        authorization: MemberAuthorization | None = None,
        idempotency_key: str | None = None,
        wait: bool = False,
        timeout: float = DEFAULT_WAIT,
    ) -> Operation:
        """Takes `points` as payment: `pin` for a custodial member, or the self-custody member's
        signed `authorization` (see `redemption_request`)."""
        return self._run(
            self._core.redeem(member_id, receipt_id, points, pin, authorization, idempotency_key, wait, timeout)
        )

    def redemption_request(
        self, member_id: str, receipt_id: str, points: int, *, valid_for: int | None = None
    ) -> RedemptionRequest:
        """What a self-custody member's wallet must sign for this redemption."""
        return self._run(self._core.redemption_request(member_id, receipt_id, points, valid_for))

    def reverse(
        self,
        receipt_id: str,
        *,
        reason: str,
        amount_minor: int | None = None,
        points: int | None = None,
        refund_id: str | None = None,
        member_id: str | None = None,
        earn_operation_id: str | None = None,
        issued_at: str | None = None,
        idempotency_key: str | None = None,
        wait: bool = False,
        timeout: float = DEFAULT_WAIT,
    ) -> Operation:
        """Takes back points of the earn of `receipt_id` (a refund): `amount_minor` refunded, or
        `points`. A second partial refund of one receipt needs its own `refund_id`. A signing
        (self-custody) client finds the earn by `earn_operation_id` or in `member_id`'s activity."""
        return self._run(
            self._core.reverse(
                receipt_id,
                amount_minor,
                points,
                reason,
                refund_id,
                member_id,
                earn_operation_id,
                issued_at,
                idempotency_key,
                wait,
                timeout,
            )
        )

    def award(
        self,
        member_id: str,
        receipt_id: str,
        points: int,
        *,
        reason: str,
        note: str | None = None,
        issued_at: str | None = None,
        idempotency_key: str | None = None,
        wait: bool = False,
        timeout: float = DEFAULT_WAIT,
    ) -> Operation:
        """Issues `points` without a purchase (r2), for `reason`: bonus, goodwill, referral,
        signup, employee, correction or retro_claim; drawn from the partner's allowance."""
        return self._run(
            _programme.award(
                self._core, member_id, receipt_id, points, reason, note, issued_at, idempotency_key, wait, timeout
            )
        )

    def refund(
        self,
        redemption_receipt_id: str,
        receipt_id: str,
        points: int,
        *,
        reason: str,
        member_id: str | None = None,
        redemption_operation_id: str | None = None,
        issued_at: str | None = None,
        idempotency_key: str | None = None,
        wait: bool = False,
        timeout: float = DEFAULT_WAIT,
    ) -> Operation:
        """Gives back `points` of this partner's confirmed redemption `redemption_receipt_id`
        (goods paid with points returned) (r2). A signing (self-custody) client finds the
        redemption by `redemption_operation_id` or in `member_id`'s activity."""
        return self._run(
            _programme.refund(
                self._core,
                redemption_receipt_id,
                receipt_id,
                points,
                reason,
                member_id,
                redemption_operation_id,
                issued_at,
                idempotency_key,
                wait,
                timeout,
            )
        )

    def migrate_member(
        self,
        member_id: str,
        address: str,
        *,
        pin: str | None = None,
        authorization: MigrationAuthorization | None = None,
        idempotency_key: str | None = None,
        wait: bool = False,
        timeout: float = DEFAULT_WAIT,
    ) -> Operation:
        """Moves the member's points, expiry, tier history and assigned tier to `address`, a new
        address of its own (r2): a custodial member with its `pin`, a self-custody member with
        its wallet's signature (`authorization`)."""
        return self._run(
            _programme.migrate_member(
                self._core, member_id, address, pin, authorization, idempotency_key, wait, timeout
            )
        )

    def resend(self, request: PreparedRequest, *, wait: bool = False, timeout: float = DEFAULT_WAIT) -> Operation:
        """Sends again a write that ended in GatewayUnreachable (`exc.request`): same key, same
        bytes, so the gateway applies it at most once and answers as the first time."""
        return self._run(self._core.send(request, wait, timeout))

    def submit_batch(
        self,
        records: Iterable[Mapping[str, Any]] | str | Path,
        *,
        content_type: str | None = None,
        idempotency_key: str | None = None,
    ) -> BatchSubmitted:
        """Submits up to 10,000 records in one request: a file (.csv with a header row, or
        .jsonl) or records as dicts (each a single operation's body plus `kind`). Each record is
        accepted or refused on its own; see `refused` for the lines that changed nothing."""
        return self._run(batches.submit(self._core, records, content_type, idempotency_key))

    def batch_status(
        self, batch_id: str, *, cursor: int | None = None, limit: int = 1000, status: str | None = None
    ) -> BatchStatus:
        """A page of the batch's lines (after line `cursor`, of one `status` if given) and its counts."""
        return self._run(batches.status(self._core, batch_id, cursor, limit, status))

    def wait_for_batch(self, batch_id: str, timeout: float = DEFAULT_WAIT) -> BatchStatus:
        """Polls until every accepted record of the batch is confirmed or rejected."""
        return self._run(batches.wait(self._core, batch_id, timeout))


class AsyncPartnerClient(_Base):
    """The same client for asyncio: every method is a coroutine."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        signing_key: bytes | str | None = None,
        partner_id: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        nonces: Callable[[], int] | None = None,
        signature_valid_for: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(api_key, signing_key, partner_id, retry, nonces, signature_valid_for)
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------ driver

    async def _send(self, call: Call) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(
                    call.method, call.path, content=call.body, params=call.params, headers=self._core.headers(call)
                )
            except RETRYABLE_ERRORS as exc:
                delay = self._core.transport_failed(call, exc, attempt)
            else:
                result = self._core.answer(call, response, attempt)
                if not isinstance(result, RetryIn):
                    return result
                delay = result.seconds
            await asyncio.sleep(delay)

    async def _run(self, flow: Flow[T]) -> T:
        reply: Any = None
        try:
            while True:
                step = flow.send(reply)
                if isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                    reply = None
                else:
                    reply = await self._send(step)
        except StopIteration as done:
            result: T = done.value
            return result
        finally:
            flow.close()

    # ------------------------------------------------------------ reads

    async def ledger(self) -> LedgerInfo:
        return await self._run(self._core.ledger())

    async def whoami(self) -> KeyInfo:
        return await self._run(self._core.key_info())

    async def member(self, member_id: str) -> Member:
        return await self._run(self._core.member(member_id))

    async def activity(self, member_id: str, *, cursor: int | None = None, limit: int = 50) -> ActivityPage:
        return await self._run(self._core.activity(member_id, cursor, limit))

    async def operation(self, operation_id: str) -> Operation:
        return await self._run(self._core.operation(operation_id))

    async def wait_for(self, operation_id: str, timeout: float = DEFAULT_WAIT) -> Operation:
        return await self._run(self._core.wait_for(operation_id, timeout))

    # ------------------------------------------------------------ writes

    async def enroll_member(
        self,
        member_id: str,
        *,
        address: str | None = None,
        pin: str | None = None,
        idempotency_key: str | None = None,
    ) -> EnrolledMember:
        return await self._run(self._core.enroll_member(member_id, address, pin, idempotency_key))

    async def earn(
        self,
        member_id: str,
        receipt_id: str,
        amount_minor: int,
        currency: str,
        *,
        issued_at: str | None = None,
        idempotency_key: str | None = None,
        wait: bool = False,
        timeout: float = DEFAULT_WAIT,
        campaign_id: int | None = None,
    ) -> Operation:
        return await self._run(
            self._core.earn(
                member_id, receipt_id, amount_minor, currency, issued_at, idempotency_key, wait, timeout, campaign_id
            )
        )

    async def create_campaign(
        self,
        *,
        starts_at: datetime | str | int,
        ends_at: datetime | str | int,
        budget: int,
        name: str | None = None,
        multiplier_bps: int = 0,
        fixed_bonus: int = 0,
        min_spend_minor: int = 0,
        tiers: list[int] | None = None,
        idempotency_key: str | None = None,
    ) -> Campaign:
        return await self._run(
            _campaigns.create_campaign(
                self._core,
                starts_at=starts_at,
                ends_at=ends_at,
                budget=budget,
                name=name,
                multiplier_bps=multiplier_bps,
                fixed_bonus=fixed_bonus,
                min_spend_minor=min_spend_minor,
                tiers=tiers,
                idempotency_key=idempotency_key,
            )
        )

    async def campaigns(self) -> list[Campaign]:
        return await self._run(_campaigns.campaigns(self._core))

    async def campaign(self, campaign_id: int) -> Campaign:
        return await self._run(_campaigns.campaign(self._core, campaign_id))

    async def redeem(
        self,
        member_id: str,
        receipt_id: str,
        points: int,
        *,
        pin: str | None = None,
        authorization: MemberAuthorization | None = None,
        idempotency_key: str | None = None,
        wait: bool = False,
        timeout: float = DEFAULT_WAIT,
    ) -> Operation:
        return await self._run(
            self._core.redeem(member_id, receipt_id, points, pin, authorization, idempotency_key, wait, timeout)
        )

    async def redemption_request(
        self, member_id: str, receipt_id: str, points: int, *, valid_for: int | None = None
    ) -> RedemptionRequest:
        return await self._run(self._core.redemption_request(member_id, receipt_id, points, valid_for))

    async def reverse(
        self,
        receipt_id: str,
        *,
        reason: str,
        amount_minor: int | None = None,
        points: int | None = None,
        refund_id: str | None = None,
        member_id: str | None = None,
        earn_operation_id: str | None = None,
        issued_at: str | None = None,
        idempotency_key: str | None = None,
        wait: bool = False,
        timeout: float = DEFAULT_WAIT,
    ) -> Operation:
        return await self._run(
            self._core.reverse(
                receipt_id,
                amount_minor,
                points,
                reason,
                refund_id,
                member_id,
                earn_operation_id,
                issued_at,
                idempotency_key,
                wait,
                timeout,
            )
        )

    async def award(
        self,
        member_id: str,
        receipt_id: str,
        points: int,
        *,
        reason: str,
        note: str | None = None,
        issued_at: str | None = None,
        idempotency_key: str | None = None,
        wait: bool = False,
        timeout: float = DEFAULT_WAIT,
    ) -> Operation:
        """Issues `points` without a purchase (r2), for `reason`: bonus, goodwill, referral,
        signup, employee, correction or retro_claim; drawn from the partner's allowance."""
        return await self._run(
            _programme.award(
                self._core, member_id, receipt_id, points, reason, note, issued_at, idempotency_key, wait, timeout
            )
        )

    async def refund(
        self,
        redemption_receipt_id: str,
        receipt_id: str,
        points: int,
        *,
        reason: str,
        member_id: str | None = None,
        redemption_operation_id: str | None = None,
        issued_at: str | None = None,
        idempotency_key: str | None = None,
        wait: bool = False,
        timeout: float = DEFAULT_WAIT,
    ) -> Operation:
        """Gives back `points` of this partner's confirmed redemption `redemption_receipt_id`
        (goods paid with points returned) (r2). A signing (self-custody) client finds the
        redemption by `redemption_operation_id` or in `member_id`'s activity."""
        return await self._run(
            _programme.refund(
                self._core,
                redemption_receipt_id,
                receipt_id,
                points,
                reason,
                member_id,
                redemption_operation_id,
                issued_at,
                idempotency_key,
                wait,
                timeout,
            )
        )

    async def migrate_member(
        self,
        member_id: str,
        address: str,
        *,
        pin: str | None = None,
        authorization: MigrationAuthorization | None = None,
        idempotency_key: str | None = None,
        wait: bool = False,
        timeout: float = DEFAULT_WAIT,
    ) -> Operation:
        """Moves the member's points, expiry, tier history and assigned tier to `address`, a new
        address of its own (r2): a custodial member with its `pin`, a self-custody member with
        its wallet's signature (`authorization`)."""
        return await self._run(
            _programme.migrate_member(
                self._core, member_id, address, pin, authorization, idempotency_key, wait, timeout
            )
        )

    async def resend(self, request: PreparedRequest, *, wait: bool = False, timeout: float = DEFAULT_WAIT) -> Operation:
        return await self._run(self._core.send(request, wait, timeout))

    async def submit_batch(
        self,
        records: Iterable[Mapping[str, Any]] | str | Path,
        *,
        content_type: str | None = None,
        idempotency_key: str | None = None,
    ) -> BatchSubmitted:
        return await self._run(batches.submit(self._core, records, content_type, idempotency_key))

    async def batch_status(
        self, batch_id: str, *, cursor: int | None = None, limit: int = 1000, status: str | None = None
    ) -> BatchStatus:
        return await self._run(batches.status(self._core, batch_id, cursor, limit, status))

    async def wait_for_batch(self, batch_id: str, timeout: float = DEFAULT_WAIT) -> BatchStatus:
        return await self._run(batches.wait(self._core, batch_id, timeout))
