"""Cache misses of concurrent earns are loaded together, and each request still gets its own
answer: its member's address and tier, or its own refusal."""

from __future__ import annotations

import asyncio

import pytest

from gateway.api.coalesce import Coalesced
from gateway.app.cache import BoundedCache
from gateway.core.errors import ErrorCode, NotFound
from gateway.core.security import Caller
from gateway.operations.accept import Prepared, prepare_earn
from gateway.operations.misses import prepare_earns
from tests.gateway.conftest import Gateway


def test_misses_waiting_together_are_loaded_in_one_call_and_answered_each() -> None:
    loads: list[list[int]] = []

    def load(items: list[int]) -> list[int | BaseException]:
        loads.append(items)
        return [ValueError(i) if i < 0 else 10 * i for i in items]

    async def main() -> list[int | BaseException]:
        coalesced: Coalesced[int, int] = Coalesced(load)
        return await asyncio.gather(*(coalesced(i) for i in (1, 2, -3, 4)), return_exceptions=True)

    results = asyncio.run(main())
    assert results[:2] == [10, 20] and results[3] == 40
    assert isinstance(results[2], ValueError)
    assert sorted(i for batch in loads for i in batch) == [-3, 1, 2, 4]
    assert len(loads) <= 2  # the first item's load, then everything that waited meanwhile


def test_a_failed_load_fails_every_request_of_it_and_the_next_load_runs() -> None:
    calls = 0

    def load(items: list[int]) -> list[int | BaseException]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("chain down")
        return list(items)

    async def main() -> tuple[list[int | BaseException], int]:
        coalesced: Coalesced[int, int] = Coalesced(load)
        first = await asyncio.gather(coalesced(1), return_exceptions=True)
        return first, await coalesced(2)

    first, second = asyncio.run(main())
    assert isinstance(first[0], RuntimeError) and second == 2


def test_earns_prepared_together_match_those_prepared_alone(gw: Gateway) -> None:
    partner = gw.partner()
    for member in ("a", "b"):
        gw.post("/v1/members", partner["api_key"], {"member_id": member, "pin": "1234"})
    caller = Caller("test", "partner", partner["partner_id"])
    alone = prepare_earn(gw.runtime, caller=caller, member_id="a", self_signed=True)
    gw.runtime._members.clear()  # start cold, as after a restart
    gw.runtime._tiers.clear()
    together = prepare_earns(gw.runtime, [(caller, "a", True), (caller, "nobody", True), (caller, "b", False)])
    assert together[0] == alone
    assert isinstance(together[1], NotFound) and together[1].code == ErrorCode.UNKNOWN_MEMBER
    assert isinstance(together[2], Prepared) and together[2].nonce is not None
    assert together[2].address == gw.runtime.member_address("b")[0]  # type: ignore[index]


def test_the_runtime_caches_hold_at_most_their_bound(gw: Gateway) -> None:
    partner = gw.partner()
    for i in range(5):
        gw.post("/v1/members", partner["api_key"], {"member_id": f"m{i}", "pin": "1234"})
    gw.runtime._members = BoundedCache(2)  # the bound of a small setting
    found = gw.runtime.member_addresses([f"m{i}" for i in range(5)])
    assert len(found) == 5 and len(gw.runtime._members) == 2
    assert gw.runtime.member_address("m0") == found["m0"]  # read again after it was forgotten


@pytest.mark.parametrize("bound", [0, -1])
def test_a_cache_holds_at_least_one_entry(bound: int) -> None:
    with pytest.raises(ValueError):
        BoundedCache(bound)
