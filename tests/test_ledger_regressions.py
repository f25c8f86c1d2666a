"""Regression tests for findings of the adversarial review of the ledger at db124b8 (issue 10).

Each test fails on that contract and passes on the fixed one; they run on the embedded chain
and on a real anvil node like the behaviour suite.
"""

from __future__ import annotations

from gateway.chain.ledger import Sender
from tests.support import World, member

EUR = 1  # partner 1: 1 point per 100 minor units


def _consistent(world: World, *holders: str) -> None:
    """Each balance is the sum of its expiry buckets, and the supply is the sum of balances."""
    total = 0
    for holder in holders:
        buckets = world.ledger.expiring_of(holder)
        months = [m for m, _ in buckets]
        assert months == sorted(set(months)), f"buckets out of order or duplicated: {buckets}"
        assert world.ledger.balance_of(holder) == sum(p for _, p in buckets)
        total += world.ledger.balance_of(holder)
    assert world.ledger.total_supply() == total


def _earn_monthly(world: World, holder: str, months: int = 4) -> int:
    """Earns 10, 20, 30... points in consecutive months (below every tier threshold), so the
    holder has one bucket per month; returns the first month."""
    start = world.month()
    for i in range(months):
        if i:
            world.next_month()
        world.earn(world.earn_op(EUR, holder, (i + 1) * 1_000))
    assert world.ledger.expiring_of(holder) == [(start + 12 + i, (i + 1) * 10) for i in range(months)]
    return start


def test_self_transfer_into_older_bucket_creates_no_points(world: World) -> None:
    """Finding 1 (a): a 1-point self-transfer once nearly doubled a balance."""
    alice_key, alice = member("alice")
    start = _earn_monthly(world, alice)
    world.ledger.call(world.admin, "setTransfersEnabled", True)
    world.chain.fund(alice, 10**18)
    alice_sender = Sender(world.chain.w3, alice_key)
    for _ in range(3):
        world.ledger.call(alice_sender, "transfer", alice, 1)
        assert world.ledger.balance_of(alice) == 100
        assert world.ledger.expiring_of(alice) == [(start + 12 + i, (i + 1) * 10) for i in range(4)]
        _consistent(world, alice)
    # Every point can still be spent, and no more.
    result = world.redeem(world.redeem_op(alice_key, EUR, 100), world.redeem_op(alice_key, EUR, 1))
    assert [(i, e.name) for i, e in result.rejections()] == [(1, "InsufficientPoints")]
    assert (world.ledger.balance_of(alice), world.ledger.total_supply()) == (0, 0)


def test_transfer_into_a_member_with_newer_buckets_keeps_both_balances(world: World) -> None:
    """Finding 1 (a), between two members: the receiver's newer buckets must not be duplicated."""
    alice_key, alice = member("alice")
    _, bob = member("bob")
    world.earn(world.earn_op(EUR, alice, 5_000))  # 50 points expiring with bob's oldest bucket
    _earn_monthly(world, bob)
    world.ledger.call(world.admin, "setTransfersEnabled", True)
    world.chain.fund(alice, 10**18)
    world.ledger.call(Sender(world.chain.w3, alice_key), "transfer", bob, 20)
    assert (world.ledger.balance_of(alice), world.ledger.balance_of(bob)) == (30, 120)
    _consistent(world, alice, bob)


def test_shorter_expiry_policy_then_earn_creates_no_points(world: World) -> None:
    """Finding 1 (b): with transfers off, the operator shortens the policy and the member earns."""
    alice_key, alice = member("alice")
    _, bob = member("bob")
    start = _earn_monthly(world, alice, months=5)
    world.earn(world.earn_op(EUR, bob, 10_000))
    world.goto_month(start + 7)
    world.ledger.call(world.admin, "setExpiryMonths", 6)
    world.earn(world.earn_op(EUR, alice, 700))  # 7 points expiring at start + 13: an existing month
    assert world.ledger.expiring_of(alice) == [
        (start + 12, 10),
        (start + 13, 27),
        (start + 14, 30),
        (start + 15, 40),
        (start + 16, 50),
    ]
    assert world.ledger.balance_of(alice) == 157
    _consistent(world, alice, bob)
    # An earn whose expiry falls between existing buckets, then an honest redemption of everything.
    world.ledger.call(world.admin, "setExpiryMonths", 4)
    world.earn(world.earn_op(EUR, alice, 300))  # 3 points expiring at start + 11, before every bucket
    assert world.ledger.expiring_of(alice)[0] == (start + 11, 3)
    _consistent(world, alice, bob)
    result = world.redeem(world.redeem_op(alice_key, EUR, 160))
    assert result.rejections() == []
    assert world.ledger.balance_of(alice) == 0
    _consistent(world, alice, bob)


# ------------------------------------------------------------------ issue 10, findings 3 to 5


def test_ring_stays_bounded_and_no_earn_reverts_after_policy_changes(world: World) -> None:
    """Finding 4: `_insert` never swept, so a never-expiring tail with a short policy after it
    grew the ring by one expired bucket a month until `TooManyBuckets` reverted the whole batch
    (month 243 here on fd34166), and a redemption then swept every one of them. On anvil the
    whole 249 months run; py-evm takes minutes for that, so the embedded chain runs 40 and
    checks what the unswept ring costs there: fd34166's redemption swept 39 buckets."""
    alice_key, alice = member("alice")
    _, bob = member("bob")
    world.ledger.call(world.admin, "setExpiryMonths", 0)
    world.earn(world.earn_op(EUR, alice, 10_000))  # 100 points that never expire: the tail
    world.ledger.call(world.admin, "setExpiryMonths", 1)
    start = world.month()
    for i in range(1, 250 if world.chain.name == "anvil" else 41):
        world.goto_month(start + i)
        # One batch, an earn for alice beside an earn for bob: neither may take the other down.
        result = world.earn(world.earn_op(EUR, alice, 100), world.earn_op(EUR, bob, 100))
        assert result.rejections() == [], (i, result.rejections())
        # Live buckets: last month's, this month's new one (expiring next month), the tail.
        assert len(world.ledger.expiring_of(alice)) <= 3
    assert world.ledger.balance_of(alice) == 100 + 2
    result = world.redeem(world.redeem_op(alice_key, EUR, 102))
    assert result.rejections() == []
    assert result.gas_used < 200_000
    _consistent(world, alice, bob)


def test_reversal_of_an_expired_earn_is_rejected(world: World) -> None:
    """Finding 3: a reversal after the earn's points expired burnt points another partner had
    paid for and gave the reverser its allowance back. Expired points are breakage."""
    _, alice = member("alice")
    start = world.month()
    record = world.earn(world.earn_op(EUR, alice, 10_000)).earn_records()[0]  # 100, expire start+12
    world.goto_month(start + 13)
    world.earn(world.earn_op(EUR, alice, 20_000))  # 200 fresh points from the same partner
    allowance = world.ledger.partner(EUR)["allowance"]
    result = world.reverse(world.reverse_op(record, 100))
    assert [(i, e.name) for i, e in result.rejections()] == [(0, "EarnExpired")]
    assert result.rejections()[0][1].args == {"earnLeaf": "0x" + record.leaf().hex(), "expiryMonth": start + 12}
    assert world.ledger.balance_of(alice) == 200
    partner = world.ledger.partner(EUR)
    assert (partner["reversed"], partner["allowance"]) == (0, allowance)


def test_reversal_is_accepted_until_the_last_month_of_the_earn(world: World) -> None:
    """Finding 3, the other side: the earn's points are live through its expiry month."""
    _, alice = member("alice")
    start = world.month()
    record = world.earn(world.earn_op(EUR, alice, 10_000)).earn_records()[0]
    world.goto_month(start + 12, day=28)
    assert world.reverse(world.reverse_op(record, 40)).rejections() == []
    assert world.ledger.balance_of(alice) == 60


def test_earn_cannot_issue_more_than_the_partner_signed_for(world: World) -> None:
    """Finding 5: the partner signed a spend, and a rate change after signing issued 10^7 times
    what it expected. The signature now binds the most points it accepts to issue."""
    _, alice = member("alice")
    signed = world.earn_op(EUR, alice, 10_000, max_points=100)  # 100 points at 1 per 100
    world.ledger.call(world.admin, "setPartnerRate", EUR, 1_000_000, 100)  # no notice on this chain
    result = world.earn(signed, world.earn_op(EUR, alice, 100, max_points=1_000_000))
    assert [(i, e.name) for i, e in result.rejections()] == [(0, "MaxPointsExceeded")]
    assert result.rejections()[0][1].args == {"maxPoints": 100, "points": 100_000_000}
    assert world.ledger.balance_of(alice) == 1_000_000
    assert not world.ledger.partner_nonce_used(EUR, signed.message.nonce)
