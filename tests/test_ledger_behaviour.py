"""The ledger's rules (SPEC sections 2-3), run on the embedded chain and on a real anvil node."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from gateway.chain.ledger import NEVER, EarnRecord, LedgerRevert, Sender
from gateway.points.rules import month_start
from partners.signing import Domain, RotateSignerMessage, address_of, sign
from tests.support import DAY, FAR_DEADLINE, World, key_for, member

EUR = 1  # partner 1: 1 point per 100 minor units
GBP = 2  # partner 2: 3 points per 200 minor units
JPY = 3  # partner 3: 5 points per minor unit


def reasons(result):
    return [(i, e.name) for i, e in result.rejections()]


# ------------------------------------------------------------------ ERC-20 surface


def test_erc20_reads(world: World) -> None:
    ledger = world.ledger
    assert ledger.view("name") == "Coalition Points"
    assert ledger.view("symbol") == "PTS"
    assert ledger.view("decimals") == 0
    assert ledger.total_supply() == 0


# ------------------------------------------------------------------ earn


def test_earn_computes_points_on_chain_and_emits_events(world: World) -> None:
    _, alice = member("alice")
    result = world.earn(world.earn_op(EUR, alice, 12_345, receipt="r-1"), world.earn_op(GBP, alice, 999))
    # floor(12345 * 1 / 100) = 123; floor(999 * 3 / 200) = 14
    earned = result.named("Earned")
    assert [(e.args["partnerId"], e.args["spend"], e.args["points"]) for e in earned] == [
        (EUR, 12_345, 123),
        (GBP, 999, 14),
    ]
    assert earned[0].args["receiptRef"] == keccak(text="r-1")
    assert earned[0].args["expiryMonth"] == world.month() + 12
    mints = result.named("Transfer")
    assert [(m.args["from"], m.args["to"], m.args["value"]) for m in mints] == [
        ("0x0000000000000000000000000000000000000000", alice, 123),
        ("0x0000000000000000000000000000000000000000", alice, 14),
    ]
    assert world.ledger.balance_of(alice) == 137
    assert world.ledger.total_supply() == 137
    partner = world.ledger.partner(EUR)
    assert (partner["issued"], partner["allowance"]) == (123, 10**12 - 123)
    assert len(result.named("EarnBatchCommitted")) == 1


def test_tier_multiplier_applies_after_threshold(world: World) -> None:
    _, bob = member("bob")
    world.earn(world.earn_op(EUR, bob, 49_900))  # 499 points: still Green
    assert world.ledger.tier_of(bob) == 0
    world.earn(world.earn_op(EUR, bob, 100))  # 1 more point -> 500 qualifying: Silver
    assert (world.ledger.qualifying_points(bob), world.ledger.tier_of(bob)) == (500, 1)
    result = world.earn(world.earn_op(EUR, bob, 10_000))  # 100 points base, x1.25
    assert result.named("Earned")[0].args["points"] == 125


@pytest.mark.parametrize(
    "case, reason",
    [
        ("wrong_key", "InvalidSignature"),
        ("foreign_chain", "InvalidSignature"),
        ("foreign_contract", "InvalidSignature"),
        ("expired", "SignatureExpired"),
        ("unknown_partner", "UnknownPartner"),
        ("zero_spend", "AmountOutOfRange"),
        ("huge_spend", "AmountOutOfRange"),
        ("zero_points", "ZeroPoints"),
        ("zero_member", "InvalidMember"),
    ],
)
def test_invalid_earn_is_skipped_and_valid_neighbours_apply(world: World, case: str, reason: str) -> None:
    _, alice = member("alice")
    domain = world.ledger.domain
    bad = {
        "wrong_key": lambda: world.earn_op(EUR, alice, 1000, key=key_for("impostor")),
        "foreign_chain": lambda: world.earn_op(EUR, alice, 1000, domain=Domain(domain.chain_id + 1, domain.contract)),
        "foreign_contract": lambda: world.earn_op(EUR, alice, 1000, domain=Domain(domain.chain_id, "0x" + "11" * 20)),
        "expired": lambda: world.earn_op(EUR, alice, 1000, deadline=world.chain.latest_timestamp() - 1),
        "unknown_partner": lambda: world.earn_op(99, alice, 1000),
        "zero_spend": lambda: world.earn_op(EUR, alice, 0),
        "huge_spend": lambda: world.earn_op(EUR, alice, 2**64),
        "zero_points": lambda: world.earn_op(EUR, alice, 99),
        "zero_member": lambda: world.earn_op(EUR, "0x" + "00" * 20, 1000),
    }[case]()
    result = world.earn(world.earn_op(EUR, alice, 500), bad, world.earn_op(EUR, alice, 700))
    assert reasons(result) == [(1, reason)]
    assert world.ledger.balance_of(alice) == 12
    assert world.ledger.partner(EUR)["issued"] == 12


def test_replayed_earn_is_rejected_in_the_same_and_a_later_batch(world: World) -> None:
    _, alice = member("alice")
    op = world.earn_op(EUR, alice, 1000)
    assert reasons(world.earn(op, op)) == [(1, "NonceAlreadyUsed")]
    assert reasons(world.earn(op)) == [(0, "NonceAlreadyUsed")]
    assert world.ledger.balance_of(alice) == 10
    assert world.ledger.partner_nonce_used(EUR, op.message.nonce)


def test_suspended_partner_cannot_issue_and_allowance_bounds_issuance(world: World) -> None:
    _, alice = member("alice")
    world.ledger.call(world.admin, "setPartnerActive", EUR, False)
    assert reasons(world.earn(world.earn_op(EUR, alice, 1000))) == [(0, "PartnerSuspended")]
    world.ledger.call(world.admin, "setPartnerActive", EUR, True)
    world.ledger.call(world.admin, "setAllowance", EUR, 15)
    result = world.earn(world.earn_op(EUR, alice, 1000), world.earn_op(EUR, alice, 1000))
    assert reasons(result) == [(1, "AllowanceExceeded")]
    rejection = result.rejections()[0][1]
    assert rejection.args == {"partnerId": EUR, "allowance": 5, "needed": 10}
    assert world.ledger.partner(EUR)["allowance"] == 5


# ------------------------------------------------------------------ redemption


def test_redemption_needs_the_members_signature_and_burns_earliest_expiring_first(world: World) -> None:
    alice_key, alice = member("alice")
    start = world.month()
    world.earn(world.earn_op(EUR, alice, 10_000))  # 100 points, expire start+12
    world.goto_month(start + 2)
    world.earn(world.earn_op(EUR, alice, 5_000))  # 50 points, expire start+14
    assert world.ledger.expiring_of(alice) == [(start + 12, 100), (start + 14, 50)]

    forged = world.redeem_op(alice_key, GBP, 30, key=key_for("partner-1"))  # signed by a partner, not Alice
    result = world.redeem(forged, world.redeem_op(alice_key, GBP, 120))
    assert reasons(result) == [(0, "InvalidSignature")]
    redeemed = result.named("Redeemed")[0]
    assert (redeemed.args["partnerId"], redeemed.args["member"], redeemed.args["points"]) == (GBP, alice, 120)
    assert world.ledger.expiring_of(alice) == [(start + 14, 30)]
    assert world.ledger.partner(GBP)["redeemed"] == 120
    assert world.ledger.total_supply() == 30


def test_redemption_rejections(world: World) -> None:
    alice_key, alice = member("alice")
    world.earn(world.earn_op(EUR, alice, 10_000))
    ok = world.redeem_op(alice_key, EUR, 10)
    cases = [
        ok,
        ok,  # replay
        world.redeem_op(alice_key, EUR, 1_000),  # more than the balance
        world.redeem_op(alice_key, EUR, 5, deadline=world.chain.latest_timestamp() - 1),
        world.redeem_op(alice_key, EUR, 0),
        world.redeem_op(alice_key, 42, 5),
        world.redeem_op(alice_key, EUR, 5, domain=Domain(1, world.ledger.address)),
    ]
    result = world.redeem(*cases)
    assert reasons(result) == [
        (1, "NonceAlreadyUsed"),
        (2, "InsufficientPoints"),
        (3, "SignatureExpired"),
        (4, "AmountOutOfRange"),
        (5, "UnknownPartner"),
        (6, "InvalidSignature"),
    ]
    insufficient = result.rejections()[1][1]
    assert insufficient.args == {"member": alice, "balance": 90, "needed": 1_000}
    assert world.ledger.balance_of(alice) == 90


# ------------------------------------------------------------------ reversal


def test_reversal_is_capped_by_the_original_earn(world: World) -> None:
    _, alice = member("alice")
    record = world.earn(world.earn_op(EUR, alice, 10_000, receipt="purchase-9")).earn_records()[0]
    result = world.reverse(world.reverse_op(record, 60), world.reverse_op(record, 50), world.reverse_op(record, 40))
    assert reasons(result) == [(1, "ReversalExceedsEarn")]
    reversed_events = result.named("Reversed")
    assert [e.args["points"] for e in reversed_events] == [60, 40]
    assert reversed_events[0].args["earnReceiptRef"] == keccak(text="purchase-9")
    assert world.ledger.balance_of(alice) == 0
    partner = world.ledger.partner(EUR)
    assert (partner["issued"], partner["reversed"], partner["allowance"]) == (100, 100, 10**12)
    assert world.ledger.view("reversedOf", record.leaf()) == 100
    assert reasons(world.reverse(world.reverse_op(record, 1))) == [(0, "ReversalExceedsEarn")]


def test_only_the_issuing_partner_can_reverse_and_proofs_cannot_be_forged(world: World) -> None:
    _, alice = member("alice")
    record = world.earn(world.earn_op(EUR, alice, 10_000)).earn_records()[0]
    inflated = EarnRecord(
        record.batch_id,
        record.partner_id,
        record.member,
        record.receipt_ref,
        record.spend,
        10_000,
        record.earn_month,
        record.proof,
    )
    result = world.reverse(
        world.reverse_op(record, 10, partner_id=GBP),  # another partner, signing with its own key
        world.reverse_op(inflated, 500),  # claims the earn issued more than it did
        world.reverse_op(record, 10, key=key_for("impostor")),
    )
    assert reasons(result) == [(0, "UnknownEarn"), (1, "UnknownEarn"), (2, "InvalidSignature")]
    assert world.ledger.balance_of(alice) == 100


def test_reversal_lowers_qualifying_points(world: World) -> None:
    _, alice = member("alice")
    record = world.earn(world.earn_op(EUR, alice, 60_000)).earn_records()[0]
    assert world.ledger.tier_of(alice) == 1
    world.reverse(world.reverse_op(record, 200))
    assert (world.ledger.qualifying_points(alice), world.ledger.tier_of(alice)) == (400, 0)


def test_proofs_work_for_every_position_of_a_large_batch(world: World) -> None:
    members = [member(f"m{i}")[1] for i in range(7)]
    records = world.earn(*[world.earn_op(EUR, m, 1_000 + i * 100) for i, m in enumerate(members)]).earn_records()
    result = world.reverse(*[world.reverse_op(r, 1) for r in records])
    assert reasons(result) == []
    assert [world.ledger.balance_of(m) for m in members] == [9 + i for i in range(7)]


# ------------------------------------------------------------------ expiry and tiers over time


def test_points_expire_at_the_end_of_the_nth_full_month_and_are_swept(world: World) -> None:
    _, alice = member("alice")
    start = world.month()
    world.earn(world.earn_op(EUR, alice, 10_000))
    world.goto_month(start + 12, day=28)
    assert world.ledger.balance_of(alice) == 100  # still the 12th full month after
    world.chain.travel_to(month_start(start + 13) + 60)
    assert world.ledger.balance_of(alice) == 0
    assert world.ledger.total_supply() == 0
    assert world.ledger.view("expiredIn", start + 12) == 100
    result = world.ledger.expire(world.relayer, [alice])
    expired = result.named("Expired")
    assert [(e.args["member"], e.args["points"], e.args["expiryMonth"]) for e in expired] == [(alice, 100, start + 12)]
    burn = result.named("Transfer")[0]
    assert (burn.args["from"], burn.args["to"], burn.args["value"]) == (alice, "0x" + "00" * 20, 100)
    assert world.ledger.expire(world.relayer, [alice]).named("Expired") == []  # only once


def test_redemption_skips_expired_points(world: World) -> None:
    alice_key, alice = member("alice")
    start = world.month()
    world.earn(world.earn_op(EUR, alice, 10_000))
    world.goto_month(start + 6)
    world.earn(world.earn_op(EUR, alice, 3_000))
    world.goto_month(start + 13)
    assert world.ledger.balance_of(alice) == 30
    result = world.redeem(world.redeem_op(alice_key, EUR, 40))
    assert reasons(result) == [(0, "InsufficientPoints")]
    result = world.redeem(world.redeem_op(alice_key, EUR, 25))
    assert [e.args["points"] for e in result.named("Expired")] == [100]  # swept on the way
    assert world.ledger.expiring_of(alice) == [(start + 18, 5)]


def test_expiry_policy_zero_means_never(world: World) -> None:
    _, alice = member("alice")
    world.ledger.call(world.admin, "setExpiryMonths", 0)
    world.earn(world.earn_op(EUR, alice, 10_000))
    world.goto_month(world.month() + 40)
    assert world.ledger.expiring_of(alice) == [(NEVER, 100)]
    assert world.ledger.total_supply() == 100
    with pytest.raises(LedgerRevert, match="InvalidExpiryMonths"):
        world.ledger.call(world.admin, "setExpiryMonths", 121)


def test_qualifying_points_cover_the_trailing_twelve_months(world: World) -> None:
    _, alice = member("alice")
    start = world.month()
    world.earn(world.earn_op(EUR, alice, 30_000))  # 300
    world.goto_month(start + 5)
    world.earn(world.earn_op(EUR, alice, 30_000))  # 300 -> 600: Silver
    assert world.ledger.tier_of(alice) == 1
    world.goto_month(start + 11)
    assert world.ledger.qualifying_points(alice) == 600
    world.goto_month(start + 12)
    assert (world.ledger.qualifying_points(alice), world.ledger.tier_of(alice)) == (300, 0)
    result = world.earn(world.earn_op(EUR, alice, 10_000))  # Green again: base rate
    assert result.named("Earned")[0].args["points"] == 100
    world.goto_month(start + 17)
    assert world.ledger.qualifying_points(alice) == 100


def test_gas_of_an_operation_does_not_grow_with_history(world: World) -> None:
    alice_key, alice = member("alice")
    start = world.month() + 1
    gas = {}
    for i in range(40):
        world.goto_month(start + i)
        world.earn(world.earn_op(EUR, alice, 1_000))
        if i in (14, 39):
            gas[i] = world.redeem(world.redeem_op(alice_key, EUR, 1)).gas_used
    # 13 buckets live at both points; the 25 extra months of history cost nothing.
    assert gas[39] <= gas[14] * 1.1
    assert len(world.ledger.expiring_of(alice)) == 13


# ------------------------------------------------------------------ transfers, pause, admin


def test_transfers_are_off_by_default_and_keep_expiry_when_on(world: World) -> None:
    alice_key, alice = member("alice")
    _, bob = member("bob")
    start = world.month()
    world.earn(world.earn_op(EUR, alice, 10_000))
    alice_sender = Sender(world.chain.w3, alice_key)
    world.chain.fund(alice, 10**18)
    with pytest.raises(LedgerRevert, match="TransfersDisabled"):
        world.ledger.call(alice_sender, "transfer", bob, 10)
    world.ledger.call(world.admin, "setTransfersEnabled", True)
    world.goto_month(start + 3)
    world.ledger.call(alice_sender, "transfer", bob, 30)
    assert world.ledger.expiring_of(bob) == [(start + 12, 30)]  # the points' own expiry, not a new one
    assert world.ledger.balance_of(alice) == 70
    assert world.ledger.total_supply() == 100  # a transfer creates and destroys nothing
    world.ledger.call(alice_sender, "transfer", alice, 5)
    assert (world.ledger.balance_of(alice), world.ledger.total_supply()) == (70, 100)
    assert world.ledger.qualifying_points(bob) == 0  # received points are not earned points


def test_pause_stops_every_balance_change(world: World) -> None:
    alice_key, alice = member("alice")
    world.earn(world.earn_op(EUR, alice, 10_000))
    world.ledger.call(world.admin, "pause")
    with pytest.raises(LedgerRevert, match="EnforcedPause"):
        world.earn(world.earn_op(EUR, alice, 10_000))
    with pytest.raises(LedgerRevert, match="EnforcedPause"):
        world.redeem(world.redeem_op(alice_key, EUR, 10))
    with pytest.raises(LedgerRevert, match="EnforcedPause"):
        world.ledger.expire(world.relayer, [alice])
    assert world.ledger.balance_of(alice) == 100
    world.ledger.call(world.admin, "unpause")
    world.redeem(world.redeem_op(alice_key, EUR, 10))
    assert world.ledger.balance_of(alice) == 90


def test_operator_functions_need_the_admin_and_admin_moves_in_two_steps(world: World) -> None:
    with pytest.raises(LedgerRevert, match="AccessControlUnauthorizedAccount"):
        world.ledger.call(world.relayer, "pause")
    with pytest.raises(LedgerRevert, match="AccessControlUnauthorizedAccount"):
        world.ledger.call(world.relayer, "addPartner", world.relayer.address, 1, 1, b"EUR", 10)
    new_admin = world.relayer
    world.ledger.call(world.admin, "beginDefaultAdminTransfer", new_admin.address)
    with pytest.raises(LedgerRevert, match="AccessControlEnforcedDefaultAdminDelay"):
        world.ledger.call(new_admin, "acceptDefaultAdminTransfer")
    world.chain.travel_to(world.chain.latest_timestamp() + 3 * DAY + 10)
    world.ledger.call(new_admin, "acceptDefaultAdminTransfer")
    assert world.ledger.view("defaultAdmin") == new_admin.address
    world.ledger.call(new_admin, "pause")
    with pytest.raises(LedgerRevert, match="AccessControlUnauthorizedAccount"):
        world.ledger.call(world.admin, "unpause")


def test_partner_settings_are_validated(world: World) -> None:
    with pytest.raises(LedgerRevert, match="InvalidRate"):
        world.ledger.call(world.admin, "addPartner", world.relayer.address, 0, 100, b"EUR", 10)
    with pytest.raises(LedgerRevert, match="InvalidSigner"):
        world.ledger.call(world.admin, "addPartner", "0x" + "00" * 20, 1, 100, b"EUR", 10)
    with pytest.raises(LedgerRevert, match="InvalidTierTable"):
        world.ledger.call(world.admin, "setTiers", [(10, 10_000)])
    with pytest.raises(LedgerRevert, match="UnknownPartner"):
        world.ledger.call(world.admin, "setPartnerActive", 77, False)


def test_partner_key_rotation(world: World) -> None:
    _, alice = member("alice")
    new_key = key_for("partner-0-rotated")
    rotation = RotateSignerMessage(EUR, address_of(new_key), world.nonce(), FAR_DEADLINE)
    world.ledger.rotate_signer(world.relayer, rotation, sign(world.ledger.domain, rotation, world.partner_keys[EUR]))
    old = world.earn_op(EUR, alice, 1_000)
    new = world.earn_op(EUR, alice, 1_000, key=new_key)
    assert reasons(world.earn(old, new)) == [(0, "InvalidSignature")]
    assert world.ledger.balance_of(alice) == 10
