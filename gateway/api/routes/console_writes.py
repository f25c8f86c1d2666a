"""The operator console's writes (SPEC section 6, r2; admin keys): partner terms and programme
changes under notice, cancelling and applying them, allowances, suspension, signer rotation,
pause, assigned tiers. Each is one or two transactions signed with the operator's key the
gateway holds (409 `operator_key_absent` without it, naming the `loyalty` command to run where
the key is kept).

Due changes are applied two ways: `POST /v1/programme/changes/{id}/apply` at once, and the
programme watch of every gateway process holding the key (gateway/api/watch.py) within
`gateway.programme_watch_seconds` of the notice period's end.

Idempotency-Key: a repeated key answers the first response without a second transaction. The
chain transaction runs outside any database transaction (it may take a block time), so two
requests with one new key at the same instant could both send; the operator's own tools are
the only callers.
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from gateway.accounts import operator
from gateway.api.deps import Admin, Idempotency, IdempotencyDep, reply
from gateway.api.schemas.console import (
    AllowanceAdd,
    AllowanceOut,
    ChangeDetail,
    PartnerStatus,
    PartnerUpdate,
    PauseOut,
    ProgrammeChange,
    ScheduledChanges,
    SignerChange,
    SignerOut,
    TierAssign,
    TierAssigned,
)
from gateway.api.schemas.requests import MAX_PARTNER_ID
from gateway.api.schemas.responses import API_ERRORS
from gateway.core.security import Caller
from gateway.operations.idempotency import Response as Stored
from gateway.operations.idempotency import _stored, request_hash
from gateway.webhooks.programme import announce_changes

router = APIRouter(tags=["console"], responses=API_ERRORS)
PartnerId = Annotated[int, Path(ge=1, le=MAX_PARTNER_ID)]
ChangeId = Annotated[int, Path(ge=1, le=2**63 - 1)]
MemberId = Annotated[str, Path(min_length=1, max_length=64)]


class _Target(BaseModel):
    """What a body-less write acts on: its Idempotency-Key is bound to it."""

    action: str
    target: int | str | None = None


def _write(
    idem: Idempotency, who: Caller, body: BaseModel, status: int, run: Callable[[], dict[str, Any]]
) -> JSONResponse:
    """A console write: a repeated Idempotency-Key's stored answer, else `run` (the chain
    transactions), then its answer stored under the key."""
    runtime = idem.runtime
    if idem.key is not None:
        with runtime.sessions() as session:
            stored = _stored(session, Idempotency.scope(who), idem.key, request_hash(body.model_dump()))
        if stored is not None:
            return reply(stored)
    answer = Stored(status, run())
    return idem.run(who, body, lambda _session: answer)


def _announced(idem: Idempotency, changes: list[dict[str, Any]]) -> None:
    with idem.runtime.writes.begin() as session:
        announce_changes(session, changes)


@router.patch("/v1/partners/{partner_id}", status_code=202, response_model=ScheduledChanges)
def update_partner(partner_id: PartnerId, body: PartnerUpdate, who: Admin, idem: IdempotencyDep) -> JSONResponse:
    """A partner's earn rate and/or settlement prices, scheduled under the notice period: the
    answer lists each change with its id and `effective_at` (state `applied` at once only on a
    ledger without notice period)."""

    def run() -> dict[str, Any]:
        rate = (body.earn_rate.points, body.earn_rate.per_minor_units) if body.earn_rate else None
        prices = (body.prices.issue, body.prices.redemption) if body.prices else None
        done = operator.update_partner(idem.runtime, partner_id=partner_id, earn_rate=rate, prices=prices)
        _announced(idem, done["changes"])
        return done

    return _write(idem, who, _Target(action=f"patch:{body.model_dump_json()}", target=partner_id), 202, run)


@router.post("/v1/partners/{partner_id}/allowance", response_model=AllowanceOut)
def add_allowance(partner_id: PartnerId, body: AllowanceAdd, who: Admin, idem: IdempotencyDep) -> JSONResponse:
    """Adds points to what the partner may still issue (acts at once)."""
    run = lambda: operator.add_allowance(idem.runtime, partner_id=partner_id, add=body.add)  # noqa: E731
    return _write(idem, who, _Target(action=f"allowance:{body.add}", target=partner_id), 200, run)


@router.post("/v1/partners/{partner_id}/suspend", response_model=PartnerStatus)
def suspend(partner_id: PartnerId, who: Admin, idem: IdempotencyDep) -> JSONResponse:
    """Stops the partner's operations at once (only issuance can stop; nothing is created)."""
    run = lambda: operator.set_active(idem.runtime, partner_id=partner_id, active=False)  # noqa: E731
    return _write(idem, who, _Target(action="suspend", target=partner_id), 200, run)


@router.post("/v1/partners/{partner_id}/resume", response_model=PartnerStatus)
def resume(partner_id: PartnerId, who: Admin, idem: IdempotencyDep) -> JSONResponse:
    """Lets a suspended partner operate again."""
    run = lambda: operator.set_active(idem.runtime, partner_id=partner_id, active=True)  # noqa: E731
    return _write(idem, who, _Target(action="resume", target=partner_id), 200, run)


@router.post("/v1/partners/{partner_id}/signer", status_code=200, response_model=SignerOut,
             responses={202: {"model": SignerOut, "description": "no signature: the change is scheduled"}})  # fmt: skip
def change_signer(partner_id: PartnerId, body: SignerChange, who: Admin, idem: IdempotencyDep) -> JSONResponse:
    """A partner's new signing key: 200 in force at once with the current key's signature; 202
    scheduled under notice without (a lost key; the current key or the operator can cancel)."""

    def run() -> dict[str, Any]:
        signature = (body.signature, body.nonce, body.deadline) if body.signature else None
        done = operator.change_signer(
            idem.runtime,
            partner_id=partner_id,
            signer=body.signer_address,
            signature=signature,  # type: ignore[arg-type]  # all three or none (SignerChange)
        )
        if done["change"] is not None:
            _announced(idem, [done["change"]])
        return done

    status = 200 if body.signature else 202
    return _write(idem, who, _Target(action=f"signer:{body.model_dump_json()}", target=partner_id), status, run)


@router.post("/v1/programme/changes", status_code=202, response_model=ScheduledChanges)
def schedule(body: ProgrammeChange, who: Admin, idem: IdempotencyDep) -> JSONResponse:
    """Programme-wide changes: the tier table, the expiry policy, the point value, each
    scheduled under the notice period (one change each); the transfers switch acts at once."""

    def run() -> dict[str, Any]:
        done = operator.schedule_programme(
            idem.runtime,
            tiers=[(r.threshold, r.multiplier_bps) for r in body.tiers] if body.tiers is not None else None,
            expiry_months=body.expiry_months,
            point_value=(body.point_value.minor_units, body.point_value.currency) if body.point_value else None,
            transfers_enabled=body.transfers_enabled,
            debt_allowed=body.debt_allowed,
        )
        _announced(idem, done["changes"])
        return done

    return _write(idem, who, body, 202, run)


@router.delete("/v1/programme/changes/{change_id}", response_model=ChangeDetail)
def cancel(change_id: ChangeId, who: Admin, idem: IdempotencyDep) -> JSONResponse:
    """Withdraws a pending change (404 `unknown_change`; 409 `change_not_pending` once applied
    or cancelled). A cancelled change never applies."""
    run = lambda: operator.cancel_change(idem.runtime, change_id=change_id)  # noqa: E731
    return _write(idem, who, _Target(action="cancel", target=change_id), 200, run)


@router.post("/v1/programme/changes/{change_id}/apply", response_model=ChangeDetail)
def apply(change_id: ChangeId, who: Admin, idem: IdempotencyDep) -> JSONResponse:
    """Applies a change whose notice period is over (409 `change_not_due` before, with its
    `effective_at` and `seconds_left`). The gateway's earn quotes follow at once."""
    run = lambda: operator.apply_change(idem.runtime, change_id=change_id)  # noqa: E731
    return _write(idem, who, _Target(action="apply", target=change_id), 200, run)


@router.post("/v1/ledger/pause", response_model=PauseOut)
def pause(who: Admin, idem: IdempotencyDep) -> JSONResponse:
    """Stops every balance change at once (409 `already_paused`)."""
    run = lambda: operator.set_paused(idem.runtime, paused=True)  # noqa: E731
    return _write(idem, who, _Target(action="pause"), 200, run)


@router.post("/v1/ledger/unpause", response_model=PauseOut)
def unpause(who: Admin, idem: IdempotencyDep) -> JSONResponse:
    """Lets balances change again (409 `not_paused`)."""
    run = lambda: operator.set_paused(idem.runtime, paused=False)  # noqa: E731
    return _write(idem, who, _Target(action="unpause"), 200, run)


@router.post("/v1/members/{member_id}/tier", response_model=TierAssigned)
def assign_tier(member_id: MemberId, body: TierAssign, who: Admin, idem: IdempotencyDep) -> JSONResponse:
    """Gives a member at least `tier` until `until` (unix seconds; 0 withdraws): a paid or
    matched status. The member's tier is the higher of this and the earned one."""

    def run() -> dict[str, Any]:
        with idem.runtime.sessions() as session:
            return operator.assign_tier(idem.runtime, session, member_id=member_id, tier=body.tier, until=body.until)

    return _write(idem, who, _Target(action=f"tier:{body.tier}:{body.until}", target=member_id), 200, run)
