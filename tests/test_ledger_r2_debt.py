"""Revision 2, SPEC section 2: clawback into member debt, on the embedded chain and on anvil.

A reversal that finds its holder with fewer points than it takes records the shortfall as the
holder's debt when the operator's policy allows (else it is rejected, as before); balances
never go negative; points later issued or refunded to the member pay the debt first; a
migration moves the debt. Every figure is also checked against the rules model."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from gateway.audit.verify import Replay, verify_chain
from gateway.chain.debt import DEBT_POLICY_CHANGE, debt_repaid, reversal_outcomes
from gateway.chain.events import fetch_events
from gateway.chain.ledger import AWARD_REASONS, BatchResult, LedgerRevert, Sender, SignedAward
from gateway.points.rules import CHANGE_DEBT_POLICY, PartnerModel, PointsModel
from partners.signing import AwardMessage, MigrateMessage, sign
from tests.support import DAY, FAR_DEADLINE, World, make_chain, member

EUR, GBP = 1, 2
ZERO = "0x" + "00" * 20


def reasons(result):
    return [(i, e.name) for i, e in result.rejections()]


def allow_debt(world: World, allowed: bool = True) -> None:
    change = world.ledger.schedule(world.admin, "setDebtPolicy", allowed)
    assert world.ledger.change(change)["state"] == "applied"  # no notice period in this world
    assert world.ledger.debt_allowed() is allowed


def award(world: World, partner_id: int, member_address: str, points: int):
    message = AwardMessage(
        partner_id,
        member_address,
        points,
        AWARD_REASONS["goodwill"],
        keccak(text=f"award-{world.nonce()}"),
        world.nonce(),
        FAR_DEADLINE,
    )
    op = SignedAward(message, sign(world.ledger.domain, message, world.partner_keys[partner_id]))
    return world.ledger.award_batch(world.relayer, [op])


def spent_earn(world: World, member_key: str, member_address: str, *, earn: int = 300, spend: int = 250):
    """An earn of `earn` points at EUR, then `spend` of them redeemed at GBP; returns the
    earn's record."""
    record = world.earn(world.earn_op(EUR, member_address, earn * 100)).earn_records()[0]
    world.redeem(world.redeem_op(member_key, GBP, spend))
    return record


def test_without_the_policy_a_reversal_beyond_the_balance_is_rejected(world: World) -> None:
    alice_key, alice = member("alice")
    assert world.ledger.debt_allowed() is False  # the default
    record = spent_earn(world, alice_key, alice)
    result = world.reverse(world.reverse_op(record, 100))
    assert reasons(result) == [(0, "InsufficientPoints")]
    assert (world.ledger.balance_of(alice), world.ledger.debt_of(alice), world.ledger.total_debt()) == (50, 0, 0)
    assert world.ledger.partner(EUR)["reversed"] == 0


def test_with_the_policy_the_shortfall_becomes_the_members_debt(world: World) -> None:
    alice_key, alice = member("alice")
    allow_debt(world)
    record = spent_earn(world, alice_key, alice)
    before = world.ledger.partner(EUR)
    result = world.reverse(world.reverse_op(record, 120))
    assert reasons(result) == []
    names = [e.name for e in result.events]
    assert names == ["DebtRecorded", "Transfer", "Reversed"]  # the debt event comes first
    debt = result.named("DebtRecorded")[0].args
    reversed_ = result.named("Reversed")[0].args
    assert (debt["partnerId"], debt["member"], debt["points"]) == (EUR, alice, 70)
    assert debt["receiptRef"] == reversed_["receiptRef"]
    assert reversed_["points"] == 120  # the whole reversal
    burn = result.named("Transfer")[0].args
    assert (burn["from"], burn["to"], burn["value"]) == (alice, ZERO, 50)  # what alice had
    [outcome] = reversal_outcomes(result)
    assert (outcome.points, outcome.taken, outcome.debt) == (120, 50, 70)
    # Balances never go negative; debt is no negative supply.
    assert (world.ledger.balance_of(alice), world.ledger.debt_of(alice), world.ledger.total_debt()) == (0, 70, 70)
    assert world.ledger.total_supply() == 0
    after = world.ledger.partner(EUR)
    # The partner's reversal counts in full: its allowance and its reversed total.
    assert after["reversed"] == 120
    assert after["allowance"] == before["allowance"] + 120
    assert world.ledger.view("reversedOf", record.leaf()) == 120
    # The cap still holds: 180 left of the 300-point earn, and the debt grows by all of it.
    assert reasons(world.reverse(world.reverse_op(record, 181))) == [(0, "ReversalExceedsEarn")]
    result = world.reverse(world.reverse_op(record, 180))
    assert [e.name for e in result.events] == ["DebtRecorded", "Reversed"]  # nothing left to burn
    assert world.ledger.debt_of(alice) == 250
    # Qualifying points fell by the whole reversal.
    assert world.ledger.qualifying_points(alice) == 0


def test_later_earns_awards_and_refunds_pay_the_debt_first(world: World) -> None:
    alice_key, alice = member("alice")
    allow_debt(world)
    record = spent_earn(world, alice_key, alice, earn=300, spend=300)
    world.reverse(world.reverse_op(record, 300))
    assert world.ledger.debt_of(alice) == 300
    issued_before = world.ledger.partner(GBP)["issued"]

    # An earn: the partner issues all of it; the debt takes what it needs first.
    result = world.earn(world.earn_op(GBP, alice, 10_000))  # 150 points at 3/200
    names = [e.name for e in result.events]
    assert names.index("DebtRepaid") < names.index("Earned")
    assert [e.name for e in result.events if e.name in ("Transfer",)] == []  # nothing left to credit
    earned = result.named("Earned")[0].args
    assert earned["points"] == 150
    repaid = result.named("DebtRepaid")[0].args
    assert (repaid["partnerId"], repaid["member"], repaid["points"]) == (GBP, alice, 150)
    assert debt_repaid(result) == {bytes(earned["receiptRef"]): 150}
    assert world.ledger.partner(GBP)["issued"] == issued_before + 150
    assert (world.ledger.balance_of(alice), world.ledger.debt_of(alice)) == (0, 150)
    assert world.ledger.qualifying_points(alice) == 150  # earned points qualify, debt or not

    # An award pays part, the rest reaches the balance.
    result = award(world, GBP, alice, 100)
    assert result.named("DebtRepaid")[0].args["points"] == 100
    assert (world.ledger.balance_of(alice), world.ledger.debt_of(alice)) == (0, 50)

    # A refund of the redemption: the member owes points it gets back here, so the debt first.
    redeemed = _last_redemption_record(world, alice)
    result = world.refund(world.refund_op(redeemed, 80))
    assert reasons(result) == []
    assert result.named("DebtRepaid")[0].args["points"] == 50
    mint = result.named("Transfer")[0].args
    assert (mint["from"], mint["to"], mint["value"]) == (ZERO, alice, 30)
    assert result.named("Refunded")[0].args["points"] == 80
    assert (world.ledger.balance_of(alice), world.ledger.debt_of(alice), world.ledger.total_debt()) == (30, 0, 0)

    # Debt paid: the next earn is an ordinary one.
    result = world.earn(world.earn_op(EUR, alice, 1_000))
    assert result.named("DebtRepaid") == []
    assert world.ledger.balance_of(alice) == 40
    # Supply = issued - redeemed + refunded - reversed - expired + outstanding debt.
    issued = sum(world.ledger.partner(p)["issued"] for p in (EUR, GBP))
    reversed_ = sum(world.ledger.partner(p)["reversed"] for p in (EUR, GBP))
    redeemed_total = sum(world.ledger.partner(p)["redeemed"] for p in (EUR, GBP))
    refunded = world.ledger.refunded(GBP)
    assert world.ledger.total_supply() == issued - redeemed_total + refunded - reversed_ + world.ledger.total_debt()


def _last_redemption_record(world: World, address: str):
    """The record of the member's redemption made by `spent_earn` (read back from its logs)."""
    events = fetch_events(world.chain.w3, world.ledger, world.ledger.deployment_block, world.chain.w3.eth.block_number)
    committed = [e for e in events if e.name == "RedeemBatchCommitted"][-1]
    redeemed = [e for e in events if e.name == "Redeemed" and e.block_number == committed.block_number]
    result = BatchResult({"gasUsed": 0}, [*redeemed, committed])  # type: ignore[arg-type]
    [record] = result.redemption_records()
    assert record.member == address
    return record


def test_a_reversal_in_a_batch_with_others_records_debt_only_for_its_holder(world: World) -> None:
    alice_key, alice = member("alice")
    _, bob = member("bob")
    allow_debt(world)
    record = spent_earn(world, alice_key, alice, earn=300, spend=290)
    bob_record = world.earn(world.earn_op(EUR, bob, 20_000)).earn_records()[0]
    result = world.reverse(
        world.reverse_op(record, 50),  # 10 taken, 40 debt
        world.reverse_op(bob_record, 150),  # bob holds 200: no debt
        world.reverse_op(record, 0),  # refused alone
    )
    assert reasons(result) == [(2, "AmountOutOfRange")]
    assert [(o.member, o.taken, o.debt) for o in reversal_outcomes(result)] == [(alice, 10, 40), (bob, 150, 0)]
    assert (world.ledger.debt_of(alice), world.ledger.debt_of(bob)) == (40, 0)
    assert world.ledger.balance_of(bob) == 50


def test_expired_points_are_not_taken_and_the_rest_is_debt(world: World) -> None:
    """Points that expired are breakage: a reversal of a later earn takes only live points."""
    alice_key, alice = member("alice")
    allow_debt(world)
    start = world.month()
    world.earn(world.earn_op(EUR, alice, 10_000))  # 100, expire start+12
    world.goto_month(start + 11)
    record = world.earn(world.earn_op(EUR, alice, 5_000)).earn_records()[0]  # 50, expire start+23
    world.redeem(world.redeem_op(alice_key, GBP, 120))  # 100 old + 20 new: 30 left
    world.goto_month(start + 13)
    result = world.reverse(world.reverse_op(record, 50))
    assert [o.debt for o in reversal_outcomes(result)] == [20]
    assert (world.ledger.balance_of(alice), world.ledger.debt_of(alice)) == (0, 20)


def test_the_debt_moves_with_a_migration(world: World) -> None:
    card_key, card = member("card")
    _, wallet = member("wallet")
    allow_debt(world)
    record = spent_earn(world, card_key, card, earn=300, spend=300)
    world.reverse(world.reverse_op(record, 100))
    message = MigrateMessage(card, wallet, world.nonce(), FAR_DEADLINE)
    world.ledger.migrate(world.relayer, message, sign(world.ledger.domain, message, card_key))
    assert (world.ledger.debt_of(card), world.ledger.debt_of(wallet), world.ledger.total_debt()) == (0, 100, 100)
    # Points issued to the new address pay the debt; the old one owes nothing.
    result = world.earn(world.earn_op(EUR, wallet, 15_000))
    assert result.named("DebtRepaid")[0].args["member"] == wallet
    assert (world.ledger.balance_of(wallet), world.ledger.debt_of(wallet)) == (50, 0)
    # A reversal of an earn credited to the old address records its debt at the holder.
    result = world.reverse(world.reverse_op(record, 200))
    assert [(o.member, o.taken, o.debt) for o in reversal_outcomes(result)] == [(wallet, 50, 150)]


def test_transfers_in_do_not_pay_a_debt(world: World) -> None:
    """Only points issued or refunded to the member pay its debt, not a gift from another
    member: the debtor holds them beside its debt."""
    alice_key, alice = member("alice")
    bob_key, bob = member("bob")
    allow_debt(world)
    record = spent_earn(world, alice_key, alice, earn=300, spend=300)
    world.reverse(world.reverse_op(record, 100))
    world.earn(world.earn_op(EUR, bob, 5_000))
    world.ledger.call(world.admin, "setTransfersEnabled", True)
    world.chain.fund(bob, 10**18)
    receipt = world.ledger.call(Sender(world.chain.w3, bob_key), "transfer", alice, 20)
    assert "DebtRepaid" not in [e.name for e in world.ledger.decode_logs(receipt)]
    assert (world.ledger.balance_of(alice), world.ledger.debt_of(alice)) == (20, 100)
    # A reversal then takes those points first and adds the rest to the debt.
    result = world.reverse(world.reverse_op(record, 50))
    assert [(o.taken, o.debt) for o in reversal_outcomes(result)] == [(20, 30)]
    assert world.ledger.debt_of(alice) == 130


def test_turning_the_policy_off_rejects_again(world: World) -> None:
    alice_key, alice = member("alice")
    allow_debt(world)
    allow_debt(world, False)
    record = spent_earn(world, alice_key, alice)
    assert reasons(world.reverse(world.reverse_op(record, 100))) == [(0, "InsufficientPoints")]


def test_only_the_operator_changes_the_policy(world: World) -> None:
    with pytest.raises(LedgerRevert) as caught:
        world.ledger.schedule(world.relayer, "setDebtPolicy", True)
    assert caught.value.error.name == "AccessControlUnauthorizedAccount"
    assert world.ledger.debt_allowed() is False


def test_the_model_agrees(world: World) -> None:
    """The rules model gives the same debt, balances and totals for the same story."""
    alice_key, alice = member("alice")
    allow_debt(world)
    model = PointsModel(notice_period=0)
    for pid, rate in ((EUR, (1, 100)), (GBP, (3, 200))):
        info = world.ledger.partner(pid)
        model.partners[pid] = PartnerModel(info["signer"], rate[0], rate[1], "EUR", info["allowance"])
    model.schedule(CHANGE_DEBT_POLICY, True, now=0)
    month = world.month()
    record = world.earn(world.earn_op(EUR, alice, 30_000)).earn_records()[0]
    model.earn(partner_id=EUR, member=alice, spend=30_000, nonce=1, month=month)
    world.redeem(world.redeem_op(alice_key, GBP, 250))
    model.redeem(partner_id=GBP, member=alice, points=250, nonce=1, month=month)
    world.reverse(world.reverse_op(record, 120))
    debt = model.reverse(
        partner_id=EUR,
        leaf=record.leaf(),
        member=alice,
        earn_points=300,
        earn_month=month,
        points=120,
        nonce=2,
        month=month,
    )
    assert debt == world.ledger.debt_of(alice) == 70
    world.earn(world.earn_op(GBP, alice, 2_000))  # 30 points
    model.earn(partner_id=GBP, member=alice, spend=2_000, nonce=3, month=month)
    assert model.last_debt_repaid == 30
    assert (model.balance(alice, month), model.member(alice).debt) == (
        world.ledger.balance_of(alice),
        world.ledger.debt_of(alice),
    )
    for pid in (EUR, GBP):
        info = world.ledger.partner(pid)
        p = model.partners[pid]
        assert (p.allowance, p.issued, p.reversed, p.redeemed) == (
            info["allowance"],
            info["issued"],
            info["reversed"],
            info["redeemed"],
        )
    assert model.total_debt() == world.ledger.total_debt()
    assert model.total_supply(month) == world.ledger.total_supply()


def test_the_policy_is_a_change_under_notice() -> None:
    """With a notice period, the policy is announced and applies only when due (embedded chain)."""
    chain = make_chain("embedded")
    try:
        world = World.create(chain, partners=1, notice_period=7 * DAY)
        change = world.ledger.schedule(world.admin, "setDebtPolicy", True)
        info = world.ledger.change(change)
        assert (info["kind"], info["state"]) == (DEBT_POLICY_CHANGE, "pending")
        assert world.ledger.debt_allowed() is False
        with pytest.raises(Exception, match="ChangeNotDue"):
            world.ledger.apply_change(world.relayer, change)
        chain.travel_to(int(info["effective_at"]))
        receipt = world.ledger.apply_change(world.relayer, change)
        names = [e.name for e in world.ledger.decode_logs(receipt)]
        assert names == ["DebtPolicySet", "ChangeApplied"]
        assert world.ledger.debt_allowed() is True
    finally:
        chain.close()


def test_the_audit_replays_debt_and_catches_a_replay_blind_to_it(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """verify_chain recomputes every balance and debt from the events alone (SPEC section 4)."""
    alice_key, alice = member("alice")
    card_key, card = member("card")
    _, wallet = member("wallet")
    allow_debt(world)
    record = spent_earn(world, alice_key, alice, earn=300, spend=280)
    world.reverse(world.reverse_op(record, 100))  # 20 taken, 80 debt
    world.earn(world.earn_op(GBP, alice, 2_000))  # 30 points repay 30
    award(world, EUR, alice, 70)  # 50 repay, 20 credited
    card_record = spent_earn(world, card_key, card, earn=100, spend=100)
    world.reverse(world.reverse_op(card_record, 40))
    message = MigrateMessage(card, wallet, world.nonce(), FAR_DEADLINE)
    world.ledger.migrate(world.relayer, message, sign(world.ledger.domain, message, card_key))
    assert world.ledger.debt_of(wallet) == 40
    report = verify_chain(world.chain.w3, world.ledger, from_block=world.ledger.deployment_block)
    assert report.ok, [str(d) for d in report.discrepancies]
    assert (world.ledger.debt_of(alice), world.ledger.balance_of(alice)) == (0, 20)

    # A replay that ignores DebtRecorded disagrees with the chain and says where.
    monkeypatch.setattr(Replay, "_reversed", lambda self, e, month: None)
    report = verify_chain(world.chain.w3, world.ledger, from_block=world.ledger.deployment_block)
    assert any(d.kind.startswith("debt of") or d.kind == "total debt" for d in report.discrepancies)
    monkeypatch.undo()
    # One that credits a debtor's earn in full is caught too.
    monkeypatch.setattr(Replay, "_repaid", lambda self, e, points: points)
    report = verify_chain(world.chain.w3, world.ledger, from_block=world.ledger.deployment_block)
    assert any(d.kind.startswith("balance of") for d in report.discrepancies), [str(d) for d in report.discrepancies]
