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
