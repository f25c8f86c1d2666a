"""The group-commit writer: bare earn jobs share one transaction and one insert per kind of
row; anything a unique constraint refuses sends the group to a careful re-run that answers
each job as if it had been alone."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from sqlalchemy.orm import Session

from gateway.core.errors import Conflict, Invalid
from gateway.core.security import Caller
from gateway.db.writer import WriteQueue
from gateway.operations.accept import accept_earn, prepare_earn
from gateway.operations.idempotency import Response, idempotent_async
from tests.gateway.conftest import Gateway


def _hold(writer: WriteQueue) -> threading.Event:
    """Keeps the writer busy until the event is set: what is submitted meanwhile is one group."""
    release, busy = threading.Event(), threading.Event()

    def wait(_session: Session) -> None:
        busy.set()
        release.wait(30)

    writer.submit(wait)
    assert busy.wait(30)
    return release


def _earn(gw: Gateway, caller: Caller, receipt_id: str, amount: int, currency: str = "EUR") -> Any:
    body = {"member_id": "card-1", "receipt_id": receipt_id, "amount_minor": amount, "currency": currency}
    prepared = prepare_earn(gw.runtime, caller=caller, member_id="card-1", self_signed=False)

    def effect(session: Session) -> Response:
        return accept_earn(
            gw.runtime,
            session,
            caller=caller,
            member_id="card-1",
            receipt_id=receipt_id,
            amount_minor=amount,
            currency=currency,
            issued_at=None,
            partner_signature=None,
            prepared=prepared,
        )

    return body, effect


def test_one_group_answers_each_job_as_if_alone(gw: Gateway) -> None:
    partner = gw.partner()
    gw.post("/v1/members", partner["api_key"], {"member_id": "card-1", "pin": "1234"})
    caller = Caller("test", "partner", partner["partner_id"])
    jobs = [
        ("k-1", *_earn(gw, caller, "R-1", 1000)),  # accepted
        ("k-1", *_earn(gw, caller, "R-1", 1000)),  # the same request again: the same answer
        ("k-1", *_earn(gw, caller, "R-1", 999)),  # the same key, another body
        (None, *_earn(gw, caller, "R-1", 1000)),  # the same receipt without a key
        (None, *_earn(gw, caller, "R-2", 2000)),  # accepted
        (None, *_earn(gw, caller, "R-3", 2000, currency="GBP")),  # refused before writing
    ]

    async def submit_all() -> list[Any]:
        release = _hold(gw.runtime.writer)
        calls = [
            asyncio.ensure_future(
                idempotent_async(
                    gw.runtime, scope="test", key=key, body=body, effect=effect, refuses_before_writing=True
                )
            )
            for key, body, effect in jobs
        ]
        await asyncio.sleep(0.2)  # every job queued behind the held one
        groups = gw.runtime.writer.batches
        release.set()
        answers = await asyncio.gather(*calls, return_exceptions=True)
        assert gw.runtime.writer.batches == groups + 2  # the held job's group, then all six as one
        return answers

    first, again, other_body, same_receipt, second, wrong_currency = asyncio.run(submit_all())
    assert first.status == 202 and again == first
    assert isinstance(other_body, Invalid) and other_body.code == "idempotency_mismatch"
    assert isinstance(same_receipt, Conflict) and same_receipt.code == "duplicate_receipt"
    assert same_receipt.details["operation_id"] == first.body["operation_id"]
    assert second.status == 202 and second.body["points"] == 20
    assert isinstance(wrong_currency, Invalid) and wrong_currency.code == "wrong_currency"
    assert (gw.count("operations"), gw.count("receipts"), gw.count("idempotency_keys")) == (2, 2, 1)


def test_a_caller_that_stops_waiting_does_not_stop_the_writer(gw: Gateway) -> None:
    partner = gw.partner()
    gw.post("/v1/members", partner["api_key"], {"member_id": "card-1", "pin": "1234"})
    caller = Caller("test", "partner", partner["partner_id"])
    writer = gw.runtime.writer
    release = _hold(writer)
    _, effect = _earn(gw, caller, "R-gone", 1000)
    abandoned = writer.submit(effect, refuses_before_writing=True)
    assert abandoned.cancel()  # as asyncio does when the request's task is cancelled
    release.set()
    _, effect = _earn(gw, caller, "R-next", 1000)
    assert writer.submit(effect, refuses_before_writing=True).result(timeout=30).status == 202
    # The abandoned write stands (a retry with its Idempotency-Key would get its answer).
    assert gw.count("operations") == 2
