"""Revision 2, SPEC section 2: campaigns, on the embedded chain and on anvil.

A partner registers a campaign with its signature (window, multiplier and/or fixed bonus,
minimum spend, tiers, budget); an earn may name it; the contract checks it is the partner's
and adds the bonus when the campaign runs at the block's time and the member's tier and
spend qualify, never beyond the budget left, drawn from the allowance; `Earned` carries the
campaign and the bonus; bonus points do not qualify for tiers. Checked against the rules
model where it decides."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.audit.verify import verify_chain
from gateway.chain.campaigns import campaign, campaign_count, campaign_earns, create_campaign
from gateway.chain.ledger import LedgerRevert
from gateway.points.rules import CampaignModel, PartnerModel, PointsModel
from partners.signing import CampaignMessage, Domain, sign
from tests.support import DAY, FAR_DEADLINE, World, key_for, member

EUR, GBP = 1, 2  # 1 point per 100 minor units; 3 per 200
GREEN, SILVER, GOLD = 0b001, 0b010, 0b100
ALL_TIERS = 0b111


def reasons(result):
    return [(i, e.name) for i, e in result.rejections()]


def terms(world: World, partner_id: int = EUR, **kw: int) -> CampaignMessage:
    now = world.chain.latest_timestamp()
    values = {
        "start": now,
        "end": now + 30 * DAY,
        "bonus_bps": 10_000,  # double points
        "fixed_bonus": 0,
        "min_spend": 0,
        "tier_mask": ALL_TIERS,
        "budget": 1_000,
        "nonce": world.nonce(),
        "deadline": FAR_DEADLINE,
    } | kw
    return CampaignMessage(partner_id=partner_id, **values)


def register(world: World, message: CampaignMessage, key: str | None = None) -> int:
    signer = key or world.partner_keys[message.partner_id]
    return create_campaign(world.ledger, world.relayer, message, sign(world.ledger.domain, message, signer))


def test_a_campaign_is_registered_with_the_partners_signature(world: World) -> None:
    message = terms(world, fixed_bonus=5, min_spend=1_000, tier_mask=SILVER | GOLD, budget=500)
    receipt = world.ledger.call(
        world.relayer,
        "createCampaign",
        message.terms(),
        message.nonce,
        message.deadline,
        *sign(world.ledger.domain, message, world.partner_keys[EUR]).__dict__.values(),
    )
    [created] = [e for e in world.ledger.decode_logs(receipt) if e.name == "CampaignCreated"]
    assert (created.args["campaignId"], created.args["partnerId"], created.args["budget"]) == (1, EUR, 500)
    assert (created.args["fixedBonus"], created.args["minSpend"], created.args["tierMask"]) == (5, 1_000, 0b110)
    c = campaign(world.ledger, 1)
    assert c is not None
    assert (c.partner_id, c.start, c.end, c.bonus_bps, c.spent, c.remaining) == (
        EUR,
        message.start,
        message.end,
        10_000,
        0,
        500,
    )
    assert campaign(world.ledger, 2) is None and campaign_count(world.ledger) == 1
    assert world.ledger.partner_nonce_used(EUR, message.nonce)  # the partner's nonce is spent


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"end": 0}, "InvalidCampaign"),  # end before start
        ({"tier_mask": 0}, "InvalidCampaign"),
        ({"budget": 0}, "InvalidCampaign"),
        ({"bonus_bps": 0, "fixed_bonus": 0}, "InvalidCampaign"),
        ({"bonus_bps": 1_000_001}, "InvalidCampaign"),
        ({"deadline": 1}, "SignatureExpired"),
    ],
)
def test_a_malformed_campaign_is_refused(world: World, change: dict[str, int], error: str) -> None:
    message = replace(terms(world), **change)
    with pytest.raises(LedgerRevert, match=error):
        register(world, message)
    assert campaign_count(world.ledger) == 0


def test_only_the_partners_current_key_registers_its_campaign_once(world: World) -> None:
    message = terms(world)
    with pytest.raises(LedgerRevert, match="InvalidSignature"):
        register(world, message, key=key_for("thief"))
    with pytest.raises(LedgerRevert, match="InvalidSignature"):
        register(world, message, key=world.partner_keys[GBP])  # another partner's key
    foreign = sign(Domain(1, world.ledger.address), message, world.partner_keys[EUR])
    with pytest.raises(LedgerRevert, match="InvalidSignature"):
        create_campaign(world.ledger, world.relayer, message, foreign)  # another chain
    signature = sign(world.ledger.domain, message, world.partner_keys[EUR])
    assert create_campaign(world.ledger, world.relayer, message, signature) == 1
    with pytest.raises(LedgerRevert, match="NonceAlreadyUsed"):
        create_campaign(world.ledger, world.relayer, message, signature)  # replay
    with pytest.raises(LedgerRevert, match="UnknownPartner"):
        register(world, replace(terms(world), partner_id=42), key=world.partner_keys[EUR])
    world.ledger.call(world.admin, "setPartnerActive", GBP, False)
    with pytest.raises(LedgerRevert, match="PartnerSuspended"):
        register(world, terms(world, GBP))


def test_an_earn_with_a_campaign_gets_its_bonus_from_the_allowance(world: World) -> None:
    _, alice = member("alice")
    cid = register(world, terms(world, bonus_bps=5_000, fixed_bonus=7, budget=1_000))
    before = world.ledger.partner(EUR)
    result = world.earn(world.earn_op(EUR, alice, 10_000, campaign_id=cid))  # 100 base
    assert reasons(result) == []
    earned = result.named("Earned")[0].args
    assert (earned["points"], earned["campaignId"], earned["bonus"]) == (157, cid, 57)  # 100 + 50 + 7
    assert [(c.campaign_id, c.points, c.bonus) for c in campaign_earns(result)] == [(cid, 157, 57)]
    assert world.ledger.balance_of(alice) == 157
    assert world.ledger.qualifying_points(alice) == 100  # bonus points never qualify
    after = world.ledger.partner(EUR)
    assert (after["issued"], after["allowance"]) == (before["issued"] + 157, before["allowance"] - 157)
    c = campaign(world.ledger, cid)
    assert c is not None and (c.spent, c.remaining) == (57, 943)
    # An earn without a campaign keeps the old encoding and gets none.
    plain = world.earn(world.earn_op(EUR, alice, 10_000)).named("Earned")[0].args
    assert (plain["points"], plain["campaignId"], plain["bonus"]) == (100, 0, 0)


def test_the_bonus_never_goes_beyond_the_budget_left(world: World) -> None:
    _, alice = member("alice")
    cid = register(world, terms(world, budget=150))
    result = world.earn(
        world.earn_op(EUR, alice, 10_000, campaign_id=cid),  # 100 bonus
        world.earn_op(EUR, alice, 10_000, campaign_id=cid),  # 50 left
        world.earn_op(EUR, alice, 10_000, campaign_id=cid),  # exhausted: base points only
    )
    assert [(e.args["points"], e.args["bonus"]) for e in result.named("Earned")] == [(200, 100), (150, 50), (100, 0)]
    c = campaign(world.ledger, cid)
    assert c is not None and c.spent == c.budget == 150


def test_window_tier_and_minimum_spend_decide_the_bonus(world: World) -> None:
    _, alice = member("alice")
    _, gold = member("gold")
    now = world.chain.latest_timestamp()
    later = register(world, terms(world, start=now + 10 * DAY, end=now + 20 * DAY))
    silver_only = register(world, terms(world, tier_mask=SILVER))
    big_spend = register(world, terms(world, min_spend=20_000))
    world.ledger.assign_tier(world.admin, gold, 2, now + 100 * DAY)  # Gold, x2
    gold_only = register(world, terms(world, tier_mask=GOLD))
    result = world.earn(
        world.earn_op(EUR, alice, 10_000, campaign_id=later),  # not started: no bonus
        world.earn_op(EUR, alice, 10_000, campaign_id=silver_only),  # alice is Green
        world.earn_op(EUR, alice, 19_999, campaign_id=big_spend),  # below the minimum
        world.earn_op(EUR, alice, 20_000, campaign_id=big_spend),  # at the minimum
        world.earn_op(EUR, gold, 10_000, campaign_id=gold_only),  # 200 base at Gold
    )
    assert [(e.args["campaignId"], e.args["bonus"]) for e in result.named("Earned")] == [
        (later, 0),
        (silver_only, 0),
        (big_spend, 0),
        (big_spend, 200),
        (gold_only, 200),
    ]
    world.chain.travel_to(now + 10 * DAY)  # the window opens; alice is Silver by now (599 points)
    assert world.earn(world.earn_op(EUR, alice, 1_000, campaign_id=later)).named("Earned")[0].args["bonus"] == 12
    world.chain.travel_to(now + 20 * DAY)  # ... and closes, end excluded
    assert world.earn(world.earn_op(EUR, alice, 1_000, campaign_id=later)).named("Earned")[0].args["bonus"] == 0


def test_each_refused_campaign_earn_is_skipped_alone(world: World) -> None:
    _, alice = member("alice")
    mine = register(world, terms(world, budget=10_000))
    theirs = register(world, terms(world, GBP))
    ok = world.earn_op(EUR, alice, 10_000, campaign_id=mine)
    signed_plain = world.earn_op(EUR, alice, 10_000)
    # A signature over an earn without a campaign does not cover one naming a campaign.
    lifted = replace(signed_plain, message=world.earn_op(EUR, alice, 10_000, campaign_id=mine).message)
    result = world.earn(
        ok,
        world.earn_op(EUR, alice, 10_000, campaign_id=theirs),  # another partner's campaign
        world.earn_op(EUR, alice, 10_000, campaign_id=99),  # unknown
        world.earn_op(EUR, alice, 10_000, campaign_id=mine, max_points=199),  # the bonus outruns the cap
        world.earn_op(EUR, alice, 10_000, campaign_id=mine, max_points=200),  # exactly the cap
        lifted,
        ok,  # replay
    )
    assert reasons(result) == [
        (1, "UnknownCampaign"),
        (2, "UnknownCampaign"),
        (3, "MaxPointsExceeded"),
        (5, "InvalidSignature"),
        (6, "NonceAlreadyUsed"),
    ]
    assert [e.args["points"] for e in result.named("Earned")] == [200, 200]
    # The bonus is drawn from the allowance: short of base + bonus, the earn is refused.
    world.ledger.call(world.admin, "setAllowance", EUR, 150)
    assert reasons(world.earn(world.earn_op(EUR, alice, 10_000, campaign_id=mine))) == [(0, "AllowanceExceeded")]
    assert reasons(world.earn(world.earn_op(EUR, alice, 10_000))) == []  # 100 alone fits


def test_a_reversal_takes_the_bonus_back_first_and_only_then_qualifying_points(world: World) -> None:
    _, alice = member("alice")
    cid = register(world, terms(world, bonus_bps=5_000))
    record = world.earn(world.earn_op(EUR, alice, 10_000, campaign_id=cid)).earn_records()[0]
    assert (record.points, record.bonus) == (150, 50)
    assert reasons(world.reverse(world.reverse_op(record, 30))) == []  # all bonus
    assert world.ledger.qualifying_points(alice) == 100
    assert reasons(world.reverse(world.reverse_op(record, 40))) == []  # 20 bonus, 20 base
    assert world.ledger.qualifying_points(alice) == 80
    assert reasons(world.reverse(world.reverse_op(record, 81))) == [(0, "ReversalExceedsEarn")]
    assert reasons(world.reverse(world.reverse_op(record, 80))) == []
    assert (world.ledger.qualifying_points(alice), world.ledger.balance_of(alice)) == (0, 0)
    # The leaf commits the bonus: a record that hides it does not prove.
    hidden = replace(record, bonus=0)
    assert reasons(world.reverse(world.reverse_op(hidden, 1))) == [(0, "UnknownEarn")]


def test_the_model_agrees_on_a_campaign_story(world: World) -> None:
    _, alice = member("alice")
    model = PointsModel(tiers=[(0, 10_000), (500, 12_500), (2_000, 20_000)])
    info = world.ledger.partner(EUR)
    model.partners[EUR] = PartnerModel(info["signer"], 1, 100, "EUR", info["allowance"])
    message = terms(world, bonus_bps=2_500, fixed_bonus=3, min_spend=5_000, budget=200)
    cid = register(world, message)
    model_id = model.create_campaign(
        CampaignModel(EUR, message.start, message.end, 2_500, 3, 5_000, ALL_TIERS, 200), nonce=message.nonce
    )
    assert model_id == cid
    month = world.month()
    for n, spend in enumerate([4_999, 40_000, 30_000, 90_000, 10_000]):
        op = world.earn_op(EUR, alice, spend, campaign_id=cid)
        result = world.earn(op)
        now = world.chain.w3.eth.get_block(result.receipt["blockNumber"])["timestamp"]
        points = model.earn(
            partner_id=EUR, member=alice, spend=spend, nonce=op.message.nonce, month=month, now=now, campaign_id=cid
        )
        earned = result.named("Earned")[0].args
        assert (earned["points"], earned["bonus"]) == (points, model.last_bonus), n
    c = campaign(world.ledger, cid)
    assert c is not None and c.spent == model.campaigns[cid].spent == 200
    assert world.ledger.qualifying_points(alice) == model.qualifying(alice, month)
    assert world.ledger.balance_of(alice) == model.balance(alice, month)


def test_the_audit_recomputes_bonuses_and_spent_budgets(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    _, alice = member("alice")
    _, bob = member("bob")
    cid = register(world, terms(world, bonus_bps=5_000, fixed_bonus=2, min_spend=2_000, budget=120))
    record = world.earn(
        world.earn_op(EUR, alice, 10_000, campaign_id=cid),
        world.earn_op(EUR, bob, 1_000, campaign_id=cid),  # below the minimum spend
        world.earn_op(EUR, bob, 20_000, campaign_id=cid),  # 68 left of the budget: 68
    ).earn_records()[0]
    world.reverse(world.reverse_op(record, 60))  # 52 bonus, then 8 base
    report = verify_chain(world.chain.w3, world.ledger, from_block=world.ledger.deployment_block)
    assert report.ok, [str(d) for d in report.discrepancies]
    # A replay whose bonus rule ignores the fixed bonus, the minimum spend and the budget is caught.
    monkeypatch.setattr(CampaignModel, "bonus", lambda self, base, spend, tier, now: base * self.bonus_bps // 10_000)
    report = verify_chain(world.chain.w3, world.ledger, from_block=world.ledger.deployment_block)
    kinds = {d.kind for d in report.discrepancies}
    assert kinds == {"bonus of a campaign earn"}, kinds
    assert len(report.discrepancies) == 3  # each of the three earns


def test_the_sdks_campaign_messages_hash_as_eip712_typed_data() -> None:
    """What a wallet signs from `typed_data()` (eth_signTypedData_v4) is what the SDK signs."""
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    from partners.signing import CampaignEarnMessage

    domain = Domain(31337, "0x" + "ab" * 20)
    key = key_for("partner")
    messages = [
        CampaignMessage(1, 1_800_000_000, 1_800_864_000, 5_000, 7, 1_000, 0b101, 10**6, 3, 2**40),
        CampaignEarnMessage(1, "0x" + "cd" * 20, 12_345, 9, b"\x01" * 32, 4, 2**40, 500),
    ]
    for message in messages:
        wallet = Account.sign_typed_data(key, full_message=message.typed_data(domain))
        signable = encode_typed_data(full_message=message.typed_data(domain))
        assert Account.recover_message(signable, signature=wallet.signature) == Account.from_key(key).address
        sdk = sign(domain, message, key)
        assert (sdk.r, sdk.vs) == (
            wallet.r.to_bytes(32, "big"),
            ((wallet.v - 27) << 255 | wallet.s).to_bytes(32, "big"),
        ), type(message).__name__
