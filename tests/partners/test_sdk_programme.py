"""The SDK's revision-2 operations (award, refund, migrate_member), sync and async, against a
live gateway over real HTTP on the embedded chain; self-custody partners sign with the SDK.
Balances are read back from the chain."""

from __future__ import annotations

import asyncio

import pytest

from partners.client import AsyncPartnerClient, MigrationAuthorization
from partners.errors import InvalidPin, NotFound, RedemptionNotConfirmed, ValidationFailed
from partners.signing import Domain, MigrateMessage, address_of, sign
from tests.partners.conftest import LiveGateway
from tests.partners.test_sdk import FAST, managed, self_custody
from tests.support import key_for


def test_managed_partners_award_refund_and_migrate(live: LiveGateway) -> None:
    cafe, _ = managed(live)
    grocer, _ = managed(live)
    with cafe, grocer:
        member = cafe.enroll_member(live.unique("card"), pin="1234")
        award = cafe.award(member.member_id, "A-1", 700, reason="signup", note="welcome", wait=True)
        assert (award.kind, award.status, award.points, award.reason) == ("award", "confirmed", 700, "signup")
        [event] = live.events("Awarded", award.receipt_ref or "")
        assert (event.args["points"], event.args["reason"]) == (700, 4)
        with pytest.raises(ValueError):
            cafe.award(member.member_id, "A-2", 5, reason="birthday")

        grocer.redeem(member.member_id, "X-1", 300, pin="1234")
        with pytest.raises(RedemptionNotConfirmed):
            grocer.refund("X-1", "RF-1", 100, reason="returned")
        live_ops = grocer.activity(member.member_id).items
        grocer.wait_for(live_ops[0].operation_id)
        with pytest.raises(NotFound):
            cafe.refund("X-1", "RF-1", 100, reason="not ours")
        with pytest.raises(ValidationFailed) as too_many:
            grocer.refund("X-1", "RF-1", 301, reason="returned")
        assert too_many.value.code == "refund_exceeds_redemption"
        refund = grocer.refund("X-1", "RF-1", 120, reason="returned", wait=True)
        assert (refund.kind, refund.status, refund.points) == ("refund", "confirmed", 120)
        assert (award.debt_repaid, refund.debt_repaid) == (0, 0)  # (r2) no debt to repay
        assert live.balance(member.address) == 700 - 300 + 120

        wallet = address_of(key_for(live.unique("wallet")))
        with pytest.raises(InvalidPin):
            cafe.migrate_member(member.member_id, wallet, pin="0000")
        moved = cafe.migrate_member(member.member_id, wallet, pin="1234", wait=True)
        assert (moved.kind, moved.status, moved.points) == ("migration", "confirmed", 520)
        view = cafe.member(member.member_id)
        assert (view.address, view.balance, view.debt) == (wallet, 520, 0) and live.balance(member.address) == 0
        # The earn that follows goes to the wallet (the SDK forgot the old address).
        cafe.earn(member.member_id, "E-1", 1000, "EUR", wait=True)
        assert live.balance(wallet) == 530


def test_self_custody_partner_signs_awards_refunds_and_reversals_after_a_migration(live: LiveGateway) -> None:
    client, partner = self_custody(live)
    with client:
        member = client.enroll_member(live.unique("card"), pin="1234")
        award = client.award(member.member_id, "A-1", 400, reason="referral", wait=True)
        assert award.status == "confirmed" and live.balance(member.address) == 400
        redemption = client.redeem(member.member_id, "X-1", 150, pin="1234", wait=True)
        assert redemption.redemption is not None and redemption.member_address == member.address
        with pytest.raises(ValueError):  # a signing client must be told where to find the redemption
            client.refund("X-1", "RF-1", 50, reason="returned")
        refund = client.refund("X-1", "RF-1", 50, reason="returned", member_id=member.member_id, wait=True)
        assert refund.status == "confirmed"
        again = client.refund(
            "X-1", "RF-2", 25, reason="returned", redemption_operation_id=redemption.operation_id, wait=True
        )
        assert again.status == "confirmed" and live.balance(member.address) == 400 - 150 + 75
        [event] = live.events("Refunded", again.receipt_ref or "")
        assert event.args["partnerId"] == partner["partner_id"]

        wallet = address_of(key_for(live.unique("wallet")))
        client.migrate_member(member.member_id, wallet, pin="1234", wait=True)
        # The award was credited to the old address: the SDK signs its reversal over that leaf,
        # and the ledger takes the points where they are now.
        reversal = client.reverse("A-1", points=100, reason="mistake", member_id=member.member_id, wait=True)
        assert (reversal.points_taken, reversal.debt) == (100, 0)
        assert live.balance(wallet) == 225
        # A new award is signed for the member's new address.
        client.award(member.member_id, "A-2", 10, reason="goodwill", wait=True)
        assert live.balance(wallet) == 235


def test_async_client_awards_refunds_and_moves_a_self_custody_member(live: LiveGateway) -> None:
    key = key_for(live.unique("async-partner"))
    partner = live.partner(signer_address=address_of(key))
    member_key = key_for(live.unique("member-wallet"))
    new_wallet = address_of(key_for(live.unique("new-wallet")))

    async def till() -> tuple[str, int]:
        async with AsyncPartnerClient(live.url, str(partner["api_key"]), signing_key=key, retry=FAST) as client:
            member = await client.enroll_member(live.unique("card"), address=address_of(member_key))
            await client.award(member.member_id, "A-1", 300, reason="bonus", wait=True)
            ledger = await client.ledger()
            deadline = live.runtime.chain.latest_timestamp() + 3600
            message = MigrateMessage(member.address, new_wallet, 1, deadline)
            signature = sign(Domain(ledger.chain_id, ledger.address), message, member_key).hex()
            with pytest.raises(ValueError):
                await client.migrate_member(member.member_id, new_wallet)
            op = await client.migrate_member(
                member.member_id, new_wallet, authorization=MigrationAuthorization(signature, 1, deadline), wait=True
            )
            assert op.status == "confirmed"
            view = await client.member(member.member_id)
            return view.address, view.balance

    address, balance = asyncio.run(till())
    assert (address, balance) == (new_wallet, 300) and live.balance(new_wallet) == 300
