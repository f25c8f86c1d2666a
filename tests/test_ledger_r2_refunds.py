"""Revision 2, SPEC section 2: refunds of redemptions, on the embedded chain and on anvil.

The partner at which points were redeemed gives points back for returned goods, with its
signature, never more than that redemption burnt minus what was already refunded; the points
expire no earlier than the ones the redemption burnt would have (the latest of their months,
or a fresh earn's month when that one is over)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.chain.ledger import LedgerRevert, SignedRedeem
from gateway.points.rules import NEVER, PartnerModel, PointsModel
from partners.signing import Domain, MigrateMessage, sign
from tests.support import FAR_DEADLINE, World, key_for, member

EUR, GBP = 1, 2
ZERO = "0x" + "00" * 20


def reasons(result):
    return [(i, e.name) for i, e in result.rejections()]


def _two_months_of_points(world: World, member_address: str) -> int:
    """300 points expiring start+12 and 300 expiring start+14; returns start."""
    start = world.month()
    world.earn(world.earn_op(EUR, member_address, 30_000))
    world.goto_month(start + 2)
    world.earn(world.earn_op(EUR, member_address, 30_000))
    return start


def test_a_refund_restores_points_with_the_latest_expiry_the_redemption_burnt(world: World) -> None:
    alice_key, alice = member("alice")
    start = _two_months_of_points(world, alice)
    before = world.ledger.partner(GBP)
    redeemed = world.redeem(world.redeem_op(alice_key, GBP, 400))  # 300 of start+12, 100 of start+14
    record = redeemed.redemption_records()[0]
    assert (record.partner_id, record.member, record.points, record.expiry_month) == (GBP, alice, 400, start + 14)
    assert world.ledger.view("redeemRoot", record.batch_id) != b"\0" * 32

    result = world.refund(world.refund_op(record, 250))
    assert reasons(result) == []
    event = result.named("Refunded")[0].args
    assert (event["partnerId"], event["member"], event["points"], event["expiryMonth"]) == (GBP, alice, 250, start + 14)
    assert event["redemptionReceiptRef"] == record.receipt_ref
    mint = result.named("Transfer")[0].args
    assert (mint["from"], mint["to"], mint["value"]) == (ZERO, alice, 250)
    # Every refunded point expires with the latest month the redemption burnt, none earlier.
    assert world.ledger.expiring_of(alice) == [(start + 14, 450)]
    assert world.ledger.refunded(GBP) == 250
    assert world.ledger.refunded_of(record.leaf()) == 250
    after = world.ledger.partner(GBP)
    # Not an issue: no allowance drawn, nothing issued; not qualifying points.
    assert (after["allowance"], after["issued"], after["redeemed"]) == (before["allowance"], 0, 400)
    assert world.ledger.qualifying_points(alice) == 600
    assert world.ledger.total_supply() == 600 - 400 + 250


def test_refunds_are_capped_by_the_redemption(world: World) -> None:
    alice_key, alice = member("alice")
    world.earn(world.earn_op(EUR, alice, 50_000))
    record = world.redeem(world.redeem_op(alice_key, GBP, 300)).redemption_records()[0]
    result = world.refund(world.refund_op(record, 200), world.refund_op(record, 101), world.refund_op(record, 100))
    assert reasons(result) == [(1, "RefundExceedsRedemption")]
    rejection = result.rejections()[0][1]
    assert (rejection.args["remaining"], rejection.args["requested"]) == (100, 101)
    assert reasons(world.refund(world.refund_op(record, 1))) == [(0, "RefundExceedsRedemption")]
    assert world.ledger.balance_of(alice) == 500
    assert world.ledger.refunded_of(record.leaf()) == 300


def test_each_invalid_refund_is_skipped_alone_beside_valid_ones(world: World) -> None:
    alice_key, alice = member("alice")
    world.earn(world.earn_op(EUR, alice, 50_000))
    record = world.redeem(world.redeem_op(alice_key, GBP, 300)).redemption_records()[0]
    ok = world.refund_op(record, 10)
    forged = replace(record, points=3_000)  # claims a bigger redemption: its leaf is not in the tree
    cases = [
        world.refund_op(record, 50),
        world.refund_op(record, 500),  # over the redemption
        ok,
        ok,  # replay
        world.refund_op(record, 10, partner_id=EUR),  # another partner claims the redemption
        world.refund_op(record, 10, key=key_for("thief")),  # wrong key
        world.refund_op(record, 10, key=world.partner_keys[EUR]),  # another partner's key
        world.refund_op(record, 10, domain=Domain(1, world.ledger.address)),  # another chain
        world.refund_op(record, 10, deadline=world.chain.latest_timestamp() - 1),
        world.refund_op(forged, 10),  # unknown redemption
        world.refund_op(replace(record, batch_id=99), 10),  # unknown batch
        world.refund_op(record, 0),
        world.refund_op(record, 10, partner_id=42),  # unknown partner
        world.refund_op(record, 20),
    ]
    result = world.refund(*cases)
    assert reasons(result) == [
        (1, "RefundExceedsRedemption"),
        (3, "NonceAlreadyUsed"),
        (4, "UnknownRedemption"),
        (5, "InvalidSignature"),
        (6, "InvalidSignature"),
        (7, "InvalidSignature"),
        (8, "SignatureExpired"),
        (9, "UnknownRedemption"),
        (10, "UnknownRedemption"),
        (11, "AmountOutOfRange"),
        (12, "UnknownPartner"),
    ]
    assert [e.args["points"] for e in result.named("Refunded")] == [50, 10, 20]
    assert world.ledger.balance_of(alice) == 200 + 80
    assert (world.ledger.refunded(GBP), world.ledger.refunded(EUR)) == (80, 0)
    world.ledger.call(world.admin, "setPartnerActive", GBP, False)
    assert reasons(world.refund(world.refund_op(record, 1))) == [(0, "PartnerSuspended")]


def test_alike_redemptions_of_one_batch_are_refunded_separately(world: World) -> None:
    """Two redemptions with the same partner, member, receipt and points in one batch have two
    leaves (their place in the batch is in the leaf), so each has its own cap."""
    alice_key, alice = member("alice")
    world.earn(world.earn_op(EUR, alice, 50_000))
    ops = [world.redeem_op(alice_key, GBP, 100) for _ in range(2)]
    same = ops[0].message.receipt_ref
    twins = []
    for op in ops:
        message = replace(op.message, receipt_ref=same)
        twins.append(SignedRedeem(message, sign(world.ledger.domain, message, alice_key)))
    first, second = world.redeem(*twins).redemption_records()
    assert first.leaf() != second.leaf()
    result = world.refund(world.refund_op(first, 100), world.refund_op(second, 100), world.refund_op(first, 1))
    assert reasons(result) == [(2, "RefundExceedsRedemption")]
    assert world.ledger.balance_of(alice) == 500


def test_a_refund_after_the_burnt_points_expired_gets_a_fresh_expiry(world: World) -> None:
    alice_key, alice = member("alice")
    start = world.month()
    world.earn(world.earn_op(EUR, alice, 10_000))  # 100, expire start+12
    record = world.redeem(world.redeem_op(alice_key, GBP, 60)).redemption_records()[0]
    assert record.expiry_month == start + 12
    world.goto_month(start + 13)  # the rest has expired; so would the 60
    assert world.ledger.balance_of(alice) == 0
    result = world.refund(world.refund_op(record, 60))
    assert result.named("Refunded")[0].args["expiryMonth"] == start + 13 + 12
    assert world.ledger.expiring_of(alice) == [(start + 25, 60)]
    assert world.ledger.total_supply() == 60
    assert world.ledger.qualifying_points(alice) == 0


def test_a_refund_keeps_a_later_expiry_than_the_current_policy_gives(world: World) -> None:
    """Points earned under 'never expire' and redeemed come back never expiring, even after
    the policy went back to 12 months: no earlier than the burnt points would have."""
    alice_key, alice = member("alice")
    world.ledger.schedule(world.admin, "setExpiryMonths", 0)
    world.earn(world.earn_op(EUR, alice, 10_000))
    record = world.redeem(world.redeem_op(alice_key, GBP, 40)).redemption_records()[0]
    assert record.expiry_month == NEVER
    world.ledger.schedule(world.admin, "setExpiryMonths", 12)
    world.refund(world.refund_op(record, 40))
    assert world.ledger.expiring_of(alice) == [(NEVER, 100)]


def test_a_refund_goes_to_where_the_members_points_moved(world: World) -> None:
    card_key, card = member("card")
    _, wallet = member("wallet")
    world.earn(world.earn_op(EUR, card, 50_000))
    record = world.redeem(world.redeem_op(card_key, GBP, 200)).redemption_records()[0]
    message = MigrateMessage(card, wallet, world.nonce(), FAR_DEADLINE)
    world.ledger.migrate(world.relayer, message, sign(world.ledger.domain, message, card_key))
    result = world.refund(world.refund_op(record, 200))
    assert reasons(result) == []
    assert result.named("Refunded")[0].args["member"] == wallet
    assert (world.ledger.balance_of(card), world.ledger.balance_of(wallet)) == (0, 500)


def test_nothing_is_refunded_while_paused(world: World) -> None:
    alice_key, alice = member("alice")
    world.earn(world.earn_op(EUR, alice, 10_000))
    record = world.redeem(world.redeem_op(alice_key, GBP, 50)).redemption_records()[0]
    world.ledger.call(world.admin, "pause")
    with pytest.raises(LedgerRevert, match="EnforcedPause"):
        world.refund(world.refund_op(record, 50))
    world.ledger.call(world.admin, "unpause")
    assert reasons(world.refund(world.refund_op(record, 50))) == []
    assert world.ledger.balance_of(alice) == 100


def test_refunds_agree_with_the_rules_model(world: World) -> None:
    alice_key, alice = member("alice")
    model = PointsModel()
    for pid in (EUR, GBP):
        p = world.ledger.partner(pid)
        model.partners[pid] = PartnerModel(p["signer"], p["rate_points"], p["rate_per_minor_units"], "", p["allowance"])
    start = world.month()
    for month in (start, start + 1):
        if month != start:
            world.goto_month(month)
        op = world.earn_op(EUR, alice, 20_000)
        world.earn(op)
        model.earn(partner_id=EUR, member=alice, spend=20_000, nonce=op.message.nonce, month=month)
    redeem = world.redeem_op(alice_key, GBP, 250)
    record = world.redeem(redeem).redemption_records()[0]
    expiry = model.redeem(partner_id=GBP, member=alice, points=250, nonce=redeem.message.nonce, month=world.month())
    assert record.expiry_month == expiry == start + 13
    ops = [world.refund_op(record, n) for n in (100, 200, 150)]
    result = world.refund(*ops)
    expected = []
    for i, op in enumerate(ops):
        try:
            model.refund(
                partner_id=GBP,
                leaf=record.leaf(),
                member=alice,
                redeemed_points=250,
                expiry_month=record.expiry_month,
                points=op.message.points,
                nonce=op.message.nonce,
                month=world.month(),
            )
        except Exception as rejected:  # noqa: BLE001 - Rejected, named like the contract's error
            expected.append((i, str(rejected)))
    assert reasons(result) == expected == [(1, "RefundExceedsRedemption")]
    assert world.ledger.expiring_of(alice) == model.expiring(alice, world.month())
    assert world.ledger.refunded(GBP) == model.partners[GBP].refunded == 250
