"""`loyalty audit verify` replays the chain with the rules and finds any disagreement."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.audit.verify import ZERO, Replay, verify_chain
from gateway.chain.backends import AnvilNode
from gateway.chain.events import EventDecoder, fetch_events, get_logs
from gateway.chain.ledger import LedgerEvent, Sender
from gateway.points.rules import PointsModel
from tests.support import World, member


@pytest.fixture(scope="module")
def history() -> Iterator[World]:
    """Several partners, members and months: tiers, refunds, transfers, expiry."""
    world = World.create(AnvilNode())
    start = world.month() + 1
    world.goto_month(start)
    keys = {name: member(name) for name in ("ana", "ben", "chloe")}
    records = world.earn(
        world.earn_op(1, keys["ana"][1], 60_000),
        world.earn_op(2, keys["ben"][1], 9_999),
        world.earn_op(3, keys["chloe"][1], 40),
    ).earn_records()
    world.earn(world.earn_op(1, keys["ana"][1], 10_000))  # Silver now: x1.25
    world.redeem(world.redeem_op(keys["ben"][0], 1, 20))
    world.goto_month(start + 3)
    world.reverse(world.reverse_op(records[0], 100))
    world.ledger.call(world.admin, "setTransfersEnabled", True)
    world.chain.fund(keys["chloe"][1], 10**18)
    world.ledger.call(Sender(world.chain.w3, keys["chloe"][0]), "transfer", keys["ana"][1], 50)
    world.goto_month(start + 8)
    world.earn(world.earn_op(2, keys["chloe"][1], 20_000))
    world.goto_month(start + 14)  # the first month's points have expired
    world.ledger.expire(world.relayer, [k[1] for k in keys.values()])
    world.redeem(world.redeem_op(keys["chloe"][0], 3, 10))
    yield world
    world.chain.close()


def test_a_true_history_verifies_without_discrepancy(history: World) -> None:
    report = verify_chain(history.chain.w3, history.ledger, from_block=history.ledger.deployment_block)
    assert report.ok, [str(d) for d in report.discrepancies]
    assert report.operations == 8 and report.members == 3
    assert report.supply == history.ledger.total_supply() > 0


def test_a_wrong_rule_is_caught_and_named(history: World, monkeypatch: pytest.MonkeyPatch) -> None:
    original = PointsModel.points_for
    monkeypatch.setattr(PointsModel, "points_for", lambda self, p, s, m: original(self, p, s, m) + 1)
    report = verify_chain(history.chain.w3, history.ledger, from_block=history.ledger.deployment_block)
    kinds = {d.kind.split(" of ")[0] for d in report.discrepancies}
    assert "points" in kinds  # each earn's recomputed points differ from the event's
    assert any("Earned" in str(d) or "points of an earn" in str(d) for d in report.discrepancies)
    assert not report.ok


def test_the_fast_decoder_reads_every_log_as_the_general_one(history: World) -> None:
    ledger = history.ledger
    logs = get_logs(history.chain.w3, ledger.address, ledger.deployment_block, history.chain.w3.eth.block_number)
    decoder = EventDecoder(ledger)
    names = set()
    for log in logs:
        assert decoder.decode(log) == ledger.decode_log(log)
        names.add(decoder.names[log["topics"][0]])
    # static events on the fast path, dynamic ones (tiers, rejections' reasons) on the general one
    assert {"Earned", "Redeemed", "Reversed", "Expired", "Transfer", "TiersSet"} <= names
    bad = dict(logs[-1], topics=[logs[-1]["topics"][0], "0x" + "ff" * 32, *logs[-1]["topics"][2:]])
    with pytest.raises(Exception):  # noqa: B017 - eth-abi's own error for a bad word, whatever its class
        decoder.decode(bad)
    # Every static event has a decoder made for it; a data word out of its type's range is not
    # read as a number by it either (`Earned`'s data: spend, points, expiryMonth as a uint32,
    # campaignId as a uint64, bonus), while a full uint256 word is one.
    assert {decoder.names[t] for t in decoder.fast} >= {"Earned", "Redeemed", "Reversed", "Expired", "Transfer"}
    earned = next(log for log in logs if decoder.names.get(log["topics"][0]) == "Earned")
    assert decoder.fast[earned["topics"][0]](earned["topics"], earned["data"]) == ledger.decode_log(earned).args
    words = [earned["data"][2 + 64 * i : 66 + 64 * i] for i in range((len(earned["data"]) - 2) // 64)]
    for i in range(len(words)):
        spoilt = dict(earned, data="0x" + "".join("f" * 64 if j == i else w for j, w in enumerate(words)))
        if i in (2, 3):
            with pytest.raises(Exception):  # noqa: B017 - as above
                decoder.decode(spoilt)
        else:
            assert decoder.decode(spoilt) == ledger.decode_log(spoilt)


def test_transfers_are_read_only_where_they_were_on(history: World) -> None:
    ledger = history.ledger
    w3 = history.chain.w3
    events = fetch_events(w3, ledger, ledger.deployment_block, w3.eth.block_number)
    transfers = [e for e in events if e.name == "Transfer"]
    switched = next(e for e in events if e.name == "TransfersSwitched")
    # the member-to-member transfer is there; mints and burns before the switch are not
    assert any(e.args["from"] != ZERO and e.args["to"] != ZERO for e in transfers)
    assert all(e.block_number >= switched.block_number for e in transfers)


def _events(second_earn_points: int) -> list[LedgerEvent]:
    def ev(name: str, **args: object) -> LedgerEvent:
        return LedgerEvent(name, dict(args), 1, "0x01", 0)

    ana, ref = "0x" + "0a" * 20, b"\1" * 32
    month = 2026 * 12
    return [
        ev("TiersSet", tiers=[(0, 10_000), (100, 20_000)]),
        ev("PartnerAdded", partnerId=1, signer=ZERO, currency=b"EUR"),
        ev("PartnerUpdated", partnerId=1, signer=ZERO, ratePoints=1, ratePerMinorUnits=1),
        ev("AllowanceSet", partnerId=1, allowance=10**9),
        ev("Earned", partnerId=1, member=ana, receiptRef=ref, spend=150, points=150, expiryMonth=month + 12),
        # the refund brings the month's qualifying points under the Silver threshold again
        ev("Reversed", partnerId=1, member=ana, receiptRef=b"\2" * 32, points=100, earnReceiptRef=ref),
        ev(
            "Earned",
            partnerId=1,
            member=ana,
            receiptRef=b"\3" * 32,
            spend=10,
            points=second_earn_points,
            expiryMonth=month + 12,
        ),
    ]


@pytest.mark.parametrize("points, ok", [(10, True), (20, False)])
def test_a_refund_lowers_the_tier_of_the_next_earn_in_the_same_month(points: int, ok: bool) -> None:
    replay = Replay()
    for event in _events(points):
        replay.apply(event, 2026 * 12)
    assert (not replay.discrepancies) is ok, [str(d) for d in replay.discrepancies]
