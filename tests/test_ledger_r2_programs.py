"""Revision 2, SPEC section 2: awards with reason codes, assigned tiers and member migration,
on the embedded chain and on anvil, each checked against the rules model where it decides."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from gateway.chain.ledger import AWARD_REASONS, LedgerRevert, SignedAward
from gateway.points.rules import PartnerModel, PointsModel
from partners.signing import AwardMessage, MigrateMessage, sign
from tests.support import DAY, FAR_DEADLINE, World, key_for, member

EUR = 1  # 1 point per 100 minor units
SILVER, GOLD = 1, 2  # x1.25, x2 (tests.support.TEST_COALITION)


def reasons(result):
    return [(i, e.name) for i, e in result.rejections()]


def award_op(world: World, partner_id: int, member_address: str, points: int, reason: str = "goodwill", **kw):
    key = kw.pop("key", None) or world.partner_keys.get(partner_id) or key_for("nobody")
    message = AwardMessage(
        partner_id,
        member_address,
        points,
        AWARD_REASONS[reason] if reason in AWARD_REASONS else int(reason),
        keccak(text=f"award-{world.nonce()}"),
        kw.pop("nonce", None) or world.nonce(),
        kw.pop("deadline", FAR_DEADLINE),
    )
    return SignedAward(message, sign(world.ledger.domain, message, key))


def award(world: World, *ops: SignedAward):
    return world.ledger.award_batch(world.relayer, list(ops))


# ------------------------------------------------------------------ awards


def test_award_issues_from_the_allowance_with_its_reason_and_does_not_qualify(world: World) -> None:
    _, alice = member("alice")
    before = world.ledger.partner(EUR)
    result = award(world, award_op(world, EUR, alice, 700, "referral"))
    assert reasons(result) == []
    awarded = result.named("Awarded")[0].args
    assert (awarded["partnerId"], awarded["member"], awarded["points"], awarded["reason"]) == (EUR, alice, 700, 3)
    assert awarded["expiryMonth"] == world.month() + 12
    mint = result.named("Transfer")[0].args
    assert (mint["from"], mint["to"], mint["value"]) == ("0x" + "00" * 20, alice, 700)
    assert world.ledger.balance_of(alice) == 700
    assert world.ledger.qualifying_points(alice) == 0  # awards are not qualifying points
    assert world.ledger.tier_of(alice) == 0
    after = world.ledger.partner(EUR)
    assert after["allowance"] == before["allowance"] - 700
    assert (after["issued"], after["awarded"]) == (before["issued"] + 700, 700)
    assert world.ledger.total_supply() == 700


def test_invalid_awards_are_skipped_beside_valid_ones(world: World) -> None:
    _, alice = member("alice")
    ok = award_op(world, EUR, alice, 10)
    world.ledger.call(world.admin, "setAllowance", 2, 50)
    result = award(
        world,
        ok,
        ok,  # replay
        award_op(world, EUR, alice, 10, "0"),  # no such reason
        award_op(world, EUR, alice, 10, "8"),
        award_op(world, EUR, alice, 10, key=key_for("impostor")),
        award_op(world, EUR, alice, 0),
        award_op(world, 2, alice, 51),  # over partner 2's allowance
        award_op(world, 99, alice, 10),
        award_op(world, EUR, alice, 5, "signup"),
    )
    assert reasons(result) == [
        (1, "NonceAlreadyUsed"),
        (2, "InvalidReason"),
        (3, "InvalidReason"),
        (4, "InvalidSignature"),
        (5, "AmountOutOfRange"),
        (6, "AllowanceExceeded"),
        (7, "UnknownPartner"),
    ]
    assert world.ledger.balance_of(alice) == 15


def test_an_award_is_reversed_like_an_earn_without_touching_qualifying_points(world: World) -> None:
    _, alice = member("alice")
    world.earn(world.earn_op(EUR, alice, 60_000))  # 600 qualifying: Silver
    record = award(world, award_op(world, EUR, alice, 300, "correction")).earn_records()[0]
    assert record.spend == 0 and record.points == 300
    result = world.reverse(world.reverse_op(record, 200), world.reverse_op(record, 101))
    assert reasons(result) == [(1, "ReversalExceedsEarn")]
    assert world.ledger.balance_of(alice) == 700
    assert world.ledger.qualifying_points(alice) == 600
    partner = world.ledger.partner(EUR)
    assert (partner["reversed"], partner["awarded"]) == (200, 300)


def test_awards_agree_with_the_rules_model(world: World) -> None:
    _, alice = member("alice")
    model = PointsModel()
    p = world.ledger.partner(EUR)
    model.partners[EUR] = PartnerModel(p["signer"], p["rate_points"], p["rate_per_minor_units"], "EUR", p["allowance"])
    ops = [award_op(world, EUR, alice, n, r) for n, r in [(5, "bonus"), (0, "bonus"), (7, "9"), (9, "employee")]]
    result = award(world, *ops)
    expected = []
    for i, op in enumerate(ops):
        m = op.message
        try:
            model.award(
                partner_id=EUR, member=alice, points=m.points, reason=m.reason, nonce=m.nonce, month=world.month()
            )
        except Exception as rejected:  # noqa: BLE001 - Rejected, named like the contract's error
            expected.append((i, str(rejected)))
    assert reasons(result) == expected
    assert world.ledger.balance_of(alice) == model.balance(alice, world.month()) == 14
    assert world.ledger.partner(EUR)["awarded"] == model.partners[EUR].awarded


# ------------------------------------------------------------------ assigned tiers


def test_an_assigned_tier_raises_the_multiplier_until_its_date(world: World) -> None:
    _, alice = member("alice")
    until = world.chain.latest_timestamp() + 10 * DAY
    receipt = world.ledger.assign_tier(world.admin, alice, GOLD, until)
    assigned = [e for e in world.ledger.decode_logs(receipt) if e.name == "TierAssigned"][0].args
    assert (assigned["member"], assigned["tier"], assigned["until"]) == (alice, GOLD, until)
    assert world.ledger.assigned_tier(alice) == (GOLD, until)
    assert world.ledger.tier_of(alice) == GOLD
    result = world.earn(world.earn_op(EUR, alice, 10_000))
    assert result.named("Earned")[0].args["points"] == 200  # x2
    world.chain.travel_to(until + 60)  # eth-tester's calls run in a block a little after the latest
    assert world.ledger.tier_of(alice) == 0
    assert world.earn(world.earn_op(EUR, alice, 10_000)).named("Earned")[0].args["points"] == 100


def test_the_higher_of_assigned_and_earned_tier_applies(world: World) -> None:
    _, bob = member("bob")
    world.earn(world.earn_op(EUR, bob, 250_000))  # 2,500 qualifying: Gold earned
    world.ledger.assign_tier(world.admin, bob, SILVER, world.chain.latest_timestamp() + DAY)
    assert world.ledger.tier_of(bob) == GOLD
    world.ledger.assign_tier(world.admin, bob, 0, 0)  # withdrawn
    assert world.ledger.assigned_tier(bob) == (0, 0)
    with pytest.raises(LedgerRevert, match="AccessControlUnauthorizedAccount"):
        world.ledger.assign_tier(world.relayer, bob, GOLD, FAR_DEADLINE)
    with pytest.raises(LedgerRevert, match="InvalidTier"):
        world.ledger.assign_tier(world.admin, bob, 8, FAR_DEADLINE)


# ------------------------------------------------------------------ migration


def test_a_member_migrates_everything_to_a_new_address_while_transfers_are_off(world: World) -> None:
    card_key, card = member("card")
    _, wallet = member("wallet")
    start = world.month()
    world.earn(world.earn_op(EUR, card, 30_000))  # 300, expire start+12
    world.goto_month(start + 2)
    world.earn(world.earn_op(EUR, card, 30_000))  # 300, expire start+14: 600 qualifying, Silver
    world.ledger.assign_tier(world.admin, card, GOLD, world.chain.latest_timestamp() + 40 * DAY)
    schedule, qualifying = world.ledger.expiring_of(card), world.ledger.qualifying_points(card)
    message = MigrateMessage(card, wallet, world.nonce(), FAR_DEADLINE)
    receipt = world.ledger.migrate(world.relayer, message, sign(world.ledger.domain, message, card_key))
    events = world.ledger.decode_logs(receipt)
    migrated = [e for e in events if e.name == "Migrated"][0].args
    assert (migrated["from"], migrated["to"], migrated["points"]) == (card, wallet, 600)
    moved = [e for e in events if e.name == "Transfer"][0].args
    assert (moved["from"], moved["to"], moved["value"]) == (card, wallet, 600)
    assert world.ledger.expiring_of(wallet) == schedule == [(start + 12, 300), (start + 14, 300)]
    assert world.ledger.qualifying_points(wallet) == qualifying == 600
    assert world.ledger.tier_of(wallet) == GOLD
    ledger = world.ledger
    assert (ledger.balance_of(card), ledger.qualifying_points(card), ledger.tier_of(card)) == (0, 0, 0)
    assert world.ledger.total_supply() == 600
    world.goto_month(start + 13)  # the first bucket keeps its expiry month at the new address
    assert world.ledger.balance_of(wallet) == 300


def test_migration_needs_the_members_signature_and_an_unused_address(world: World) -> None:
    card_key, card = member("card")
    _, wallet = member("wallet")
    _, used = member("used")
    world.earn(world.earn_op(EUR, card, 10_000), world.earn_op(EUR, used, 10_000))
    domain = world.ledger.domain
    stolen = MigrateMessage(card, wallet, world.nonce(), FAR_DEADLINE)
    with pytest.raises(LedgerRevert, match="InvalidSignature"):
        world.ledger.migrate(world.relayer, stolen, sign(domain, stolen, key_for("thief")))
    into_used = MigrateMessage(card, used, world.nonce(), FAR_DEADLINE)
    with pytest.raises(LedgerRevert, match="AccountInUse"):
        world.ledger.migrate(world.relayer, into_used, sign(domain, into_used, card_key))
    late = MigrateMessage(card, wallet, world.nonce(), world.chain.latest_timestamp() - 1)
    with pytest.raises(LedgerRevert, match="SignatureExpired"):
        world.ledger.migrate(world.relayer, late, sign(domain, late, card_key))
    ok = MigrateMessage(card, wallet, world.nonce(), FAR_DEADLINE)
    signature = sign(domain, ok, card_key)
    world.ledger.migrate(world.relayer, ok, signature)
    with pytest.raises(LedgerRevert, match="NonceAlreadyUsed|AccountInUse"):
        world.ledger.migrate(world.relayer, ok, signature)  # replayed
    assert (world.ledger.balance_of(card), world.ledger.balance_of(wallet)) == (0, 100)
    world.ledger.call(world.admin, "pause")
    back = MigrateMessage(wallet, card, world.nonce(), FAR_DEADLINE)
    with pytest.raises(LedgerRevert, match="EnforcedPause"):
        world.ledger.migrate(world.relayer, back, sign(domain, back, member("wallet")[0]))


def test_a_reversal_follows_the_points_through_migrations(world: World) -> None:
    """A member earns, moves to a wallet, then to another: the partner's reversal of the first
    earn still takes the points back, from where they are now (found by the Foundry suite)."""
    card_key, card = member("card")
    wallet_key, wallet = member("wallet")
    _, phone = member("phone")
    result = world.earn(world.earn_op(EUR, card, 50_000))  # 500 points
    record = result.earn_records()[0]
    domain = world.ledger.domain
    first = MigrateMessage(card, wallet, world.nonce(), FAR_DEADLINE)
    world.ledger.migrate(world.relayer, first, sign(domain, first, card_key))
    second = MigrateMessage(wallet, phone, world.nonce(), FAR_DEADLINE)
    world.ledger.migrate(world.relayer, second, sign(domain, second, wallet_key))
    reversed_ = world.reverse(world.reverse_op(record, 200))
    assert reasons(reversed_) == []
    event = reversed_.named("Reversed")[0].args
    assert (event["member"], event["points"]) == (phone, 200)
    assert (world.ledger.balance_of(phone), world.ledger.qualifying_points(phone)) == (300, 300)
    assert world.ledger.total_supply() == 300


def test_a_migration_chain_cannot_be_redirected(world: World) -> None:
    """Once its points moved, an address cannot move them again (which would send reversals
    to an empty address), and no one migrates into an address a migration left."""
    card_key, card = member("card")
    _, wallet = member("wallet")
    _, decoy = member("decoy")
    other_key, other = member("other")
    world.earn(world.earn_op(EUR, card, 10_000), world.earn_op(EUR, other, 10_000))
    domain = world.ledger.domain
    ok = MigrateMessage(card, wallet, world.nonce(), FAR_DEADLINE)
    world.ledger.migrate(world.relayer, ok, sign(domain, ok, card_key))
    again = MigrateMessage(card, decoy, world.nonce(), FAR_DEADLINE)
    with pytest.raises(LedgerRevert, match="InvalidMember"):
        world.ledger.migrate(world.relayer, again, sign(domain, again, card_key))
    into_left = MigrateMessage(other, card, world.nonce(), FAR_DEADLINE)
    with pytest.raises(LedgerRevert, match="AccountInUse"):
        world.ledger.migrate(world.relayer, into_left, sign(domain, into_left, other_key))
    assert (world.ledger.balance_of(wallet), world.ledger.balance_of(decoy), world.ledger.balance_of(card)) == (
        100,
        0,
        0,
    )
