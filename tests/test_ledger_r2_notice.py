"""Revision 2, SPEC section 3: the operator's key alone cannot issue as a partner, and
programme changes take effect only after the notice period (issue 10, finding 2).

A world of its own, deployed with a 7-day notice period, on the embedded chain and on anvil.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.chain.backends import AnvilNode
from gateway.chain.ledger import Ledger, LedgerRevert, Sender
from gateway.points.rules import CHANGE_EXPIRY, CHANGE_PRICES, CHANGE_RATE, PartnerModel, PointsModel, Rejected
from partners.signing import CancelChangeMessage, RotateSignerMessage, address_of, sign
from tests.conftest import _anvil_available
from tests.support import DAY, FAR_DEADLINE, TEST_COALITION, World, anvil_required, key_for, make_chain, member

EUR = 1
NOTICE = 7 * DAY


@pytest.fixture(scope="module", params=["embedded", "anvil"])
def notice_base(request: pytest.FixtureRequest) -> Iterator[World]:
    kind = request.param
    if kind == "anvil" and not _anvil_available():
        if anvil_required():
            pytest.fail("anvil is missing in CI")
        pytest.skip("anvil not installed (run scripts/bootstrap)")
    chain = make_chain(kind)
    try:
        world = World.create(chain, notice_period=NOTICE)
        # The partners World.create added wait out their notice once, for every test.
        world.chain.travel_to(world.chain.latest_timestamp() + NOTICE + 1)
        yield world
    finally:
        chain.close()


@pytest.fixture
def world(notice_base: World) -> Iterator[World]:
    snapshot = notice_base.chain.snapshot()
    nonces = notice_base.admin._nonce, notice_base.relayer._nonce
    try:
        yield notice_base
    finally:
        notice_base.chain.revert(snapshot)
        notice_base.admin._nonce, notice_base.relayer._nonce = nonces


def reasons(result):
    return [(i, e.name) for i, e in result.rejections()]


def later(world: World, seconds: int) -> None:
    world.chain.travel_to(world.chain.latest_timestamp() + seconds)


def test_the_notice_period_is_on_chain_and_the_initial_programme_applied_at_deploy(world: World) -> None:
    assert world.ledger.notice_period() == NOTICE
    # setTiers at deployment ran before the first partner: it applied at once.
    assert len(world.ledger.view("tiers")) == len(TEST_COALITION.tiers)


def test_operator_cannot_swap_a_signer_and_issue_at_once(world: World) -> None:
    """Finding 2: the operator's key swapped a partner's signer and issued 5,000,000 points in
    the next block. Now its request waits the notice period, and the current key can cancel."""
    _, alice = member("alice")
    operator_key = key_for("operator-chosen")
    change_id = world.ledger.schedule(world.admin, "requestSignerChange", EUR, address_of(operator_key))
    forged = world.earn_op(EUR, alice, 500_000_000, key=operator_key)
    assert reasons(world.earn(forged)) == [(0, "InvalidSignature")]
    with pytest.raises(LedgerRevert, match="ChangeNotDue"):
        world.ledger.apply_change(world.relayer, change_id)
    # The partner sees the announced change and withdraws it with its current key.
    cancel = CancelChangeMessage(EUR, change_id)
    world.ledger.cancel_signer_change(world.relayer, cancel, sign(world.ledger.domain, cancel, world.partner_keys[EUR]))
    later(world, NOTICE + 1)
    with pytest.raises(LedgerRevert, match="UnknownChange"):
        world.ledger.apply_change(world.relayer, change_id)
    assert world.ledger.partner(EUR)["signer"] == address_of(world.partner_keys[EUR])
    assert reasons(world.earn(world.earn_op(EUR, alice, 1_000, key=operator_key))) == [(0, "InvalidSignature")]
    assert world.ledger.balance_of(alice) == 0


def test_a_lost_key_is_replaced_after_the_notice_period(world: World) -> None:
    _, alice = member("alice")
    new_key = key_for("partner-0-recovered")
    change_id = world.ledger.schedule(world.admin, "requestSignerChange", EUR, address_of(new_key))
    change = world.ledger.change(change_id)
    assert (change["kind"], change["state"], change["partner_id"]) == (5, "pending", EUR)
    assert change["effective_at"] == world.chain.latest_timestamp() + NOTICE
    later(world, NOTICE)
    receipt = world.ledger.apply_change(world.relayer, change_id)  # anyone may apply a due change
    names = [e.name for e in world.ledger.decode_logs(receipt)]
    assert names == ["PartnerUpdated", "ChangeApplied"]
    assert world.ledger.change(change_id)["state"] == "applied"
    assert reasons(world.earn(world.earn_op(EUR, alice, 1_000, key=new_key))) == []
    assert reasons(world.earn(world.earn_op(EUR, alice, 1_000))) == [(0, "InvalidSignature")]


def test_only_the_current_key_cancels_a_signer_change(world: World) -> None:
    change_id = world.ledger.schedule(world.admin, "requestSignerChange", EUR, address_of(key_for("x")))
    cancel = CancelChangeMessage(EUR, change_id)
    with pytest.raises(LedgerRevert, match="InvalidSignature"):
        world.ledger.cancel_signer_change(world.relayer, cancel, sign(world.ledger.domain, cancel, key_for("x")))
    assert world.ledger.change(change_id)["state"] == "pending"
    world.ledger.call(world.admin, "cancelChange", change_id)  # the operator may withdraw its own
    assert world.ledger.change(change_id)["state"] == "cancelled"


def test_signer_rotation_with_the_current_key_is_immediate_and_single_use(world: World) -> None:
    _, alice = member("alice")
    new_key = key_for("partner-0-next")
    rotation = RotateSignerMessage(EUR, address_of(new_key), world.nonce(), FAR_DEADLINE)
    signature = sign(world.ledger.domain, rotation, world.partner_keys[EUR])
    receipt = world.ledger.rotate_signer(world.relayer, rotation, signature)
    rotated = [e for e in world.ledger.decode_logs(receipt) if e.name == "SignerRotated"][0]
    assert rotated.args["newSigner"] == address_of(new_key)
    assert reasons(world.earn(world.earn_op(EUR, alice, 1_000, key=new_key))) == []
    with pytest.raises(LedgerRevert, match="InvalidSignature|NonceAlreadyUsed"):
        world.ledger.rotate_signer(world.relayer, rotation, signature)  # replayed
    forged = RotateSignerMessage(EUR, address_of(key_for("thief")), world.nonce(), FAR_DEADLINE)
    with pytest.raises(LedgerRevert, match="InvalidSignature"):
        world.ledger.rotate_signer(world.relayer, forged, sign(world.ledger.domain, forged, key_for("thief")))
    assert world.ledger.partner(EUR)["signer"] == address_of(new_key)


def test_rate_tier_expiry_and_point_value_changes_wait_for_the_notice_period(world: World) -> None:
    _, alice = member("alice")
    start = world.month()
    scheduled = [
        world.ledger.schedule(world.admin, "setPartnerRate", EUR, 10, 100),
        world.ledger.schedule(world.admin, "setExpiryMonths", 3),
        world.ledger.schedule(world.admin, "setTiers", [(0, 20_000)]),
        world.ledger.schedule(world.admin, "setPointValue", 5, b"EUR"),
    ]
    result = world.earn(world.earn_op(EUR, alice, 10_000))
    earned = result.named("Earned")[0].args
    assert (earned["points"], earned["expiryMonth"]) == (100, start + 12)  # old rate, tier, policy
    assert world.ledger.view("pointValue")[0] == 1
    for change_id in scheduled:
        with pytest.raises(LedgerRevert, match="ChangeNotDue"):
            world.ledger.apply_change(world.relayer, change_id)
    later(world, NOTICE)
    for change_id in scheduled:
        world.ledger.apply_change(world.relayer, change_id)
    result = world.earn(world.earn_op(EUR, alice, 10_000))
    month = world.month()
    earned = result.named("Earned")[0].args
    assert (earned["points"], earned["expiryMonth"]) == (10 * 100 * 2, month + 3)
    assert world.ledger.view("pointValue")[0] == 5
    with pytest.raises(LedgerRevert, match="UnknownChange"):
        world.ledger.apply_change(world.relayer, scheduled[0])  # applies once


def test_partner_prices_change_after_the_notice_period(world: World) -> None:
    assert world.ledger.partner_prices(EUR) == (0, 0)  # the coalition's point value
    change_id = world.ledger.schedule(world.admin, "setPartnerPrices", EUR, 12, 9)
    assert world.ledger.partner_prices(EUR) == (0, 0)
    later(world, NOTICE)
    receipt = world.ledger.apply_change(world.relayer, change_id)
    prices = [e for e in world.ledger.decode_logs(receipt) if e.name == "PartnerPricesSet"][0].args
    assert (prices["partnerId"], prices["issuePrice"], prices["redemptionPrice"]) == (EUR, 12, 9)
    assert world.ledger.partner_prices(EUR) == (12, 9)
    with pytest.raises(LedgerRevert, match="UnknownPartner"):
        world.ledger.call(world.admin, "setPartnerPrices", 77, 1, 1)


def test_changes_agree_with_the_rules_model(world: World) -> None:
    model = PointsModel(notice_period=NOTICE)
    model.partners[EUR] = PartnerModel("0x0", 1, 100, "EUR", 0)
    now = world.chain.latest_timestamp()
    chain_ids = [
        world.ledger.schedule(world.admin, "setPartnerRate", EUR, 3, 100),
        world.ledger.schedule(world.admin, "setPartnerPrices", EUR, 4, 5),
        world.ledger.schedule(world.admin, "setExpiryMonths", 6),
    ]
    model_ids = [
        model.schedule(CHANGE_RATE, (3, 100), now=now, partner_id=EUR),
        model.schedule(CHANGE_PRICES, (4, 5), now=now, partner_id=EUR),
        model.schedule(CHANGE_EXPIRY, 6, now=now),
    ]
    assert [c - chain_ids[0] for c in chain_ids] == [m - model_ids[0] for m in model_ids]
    world.ledger.call(world.admin, "cancelChange", chain_ids[2])
    model.cancel_change(model_ids[2])
    with pytest.raises(Rejected, match="ChangeNotDue"):
        model.apply_change(model_ids[0], now=now + NOTICE - 10)
    later(world, NOTICE)
    for chain_id, model_id in zip(chain_ids[:2], model_ids[:2], strict=True):
        world.ledger.apply_change(world.relayer, chain_id)
        model.apply_change(model_id, now=now + NOTICE)
    partner = world.ledger.partner(EUR)
    p = model.partners[EUR]
    assert (partner["rate_points"], partner["rate_per_minor_units"]) == (p.rate_points, p.rate_per_minor_units)
    assert world.ledger.partner_prices(EUR) == (p.issue_price, p.redemption_price)
    assert world.ledger.view("expiryMonths") == model.expiry_months == 12


def test_a_new_partner_issues_only_after_the_notice_period(world: World) -> None:
    _, alice = member("alice")
    key = key_for("partner-new")
    pid = world.ledger.add_partner(
        world.admin, signer=address_of(key), rate_points=1, rate_per_minor_units=100, currency="EUR", allowance=10**9
    )
    world.partner_keys[pid] = key
    active_from = world.ledger.partner(pid)["active_from"]
    assert active_from == world.chain.latest_timestamp() + NOTICE
    result = world.earn(world.earn_op(pid, alice, 1_000))
    assert reasons(result) == [(0, "PartnerNotYetActive")]
    assert result.rejections()[0][1].args == {"partnerId": pid, "activeFrom": active_from}
    later(world, NOTICE)
    assert reasons(world.earn(world.earn_op(pid, alice, 1_000))) == []


def test_suspension_and_pause_act_at_once(world: World) -> None:
    _, alice = member("alice")
    world.ledger.call(world.admin, "setPartnerActive", EUR, False)
    assert reasons(world.earn(world.earn_op(EUR, alice, 1_000))) == [(0, "PartnerSuspended")]
    world.ledger.call(world.admin, "pause")
    with pytest.raises(LedgerRevert, match="EnforcedPause"):
        world.earn(world.earn_op(2, alice, 1_000))


def test_operator_scheduling_needs_the_admin(world: World) -> None:
    for function, args in [
        ("requestSignerChange", (EUR, world.relayer.address)),
        ("setPartnerRate", (EUR, 5, 1)),
        ("cancelChange", (1,)),
    ]:
        with pytest.raises(LedgerRevert, match="AccessControlUnauthorizedAccount"):
            world.ledger.call(world.relayer, function, *args)


@pytest.mark.anvil
def test_outside_development_chains_the_notice_period_is_at_least_seven_days() -> None:
    if not _anvil_available():
        pytest.skip("anvil not installed (run scripts/bootstrap)")
    chain = AnvilNode(extra_args=("--chain-id", "10"))
    try:
        admin = Sender(chain.w3, chain.dev_keys[0])
        with pytest.raises(LedgerRevert, match="NoticePeriodTooShort"):
            Ledger.deploy(admin, TEST_COALITION, notice_period=NOTICE - 1)
        ledger = Ledger.deploy(admin, TEST_COALITION, notice_period=NOTICE)
        assert ledger.notice_period() == NOTICE
    finally:
        chain.close()
