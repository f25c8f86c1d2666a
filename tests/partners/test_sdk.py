"""The partner SDK against a live gateway over real HTTP, on the embedded chain.

Every balance is read back from the chain and every operation matched to its on-chain event.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest
from eth_account import Account

from gateway.chain.backends import free_port
from gateway.core.config import REPO_ROOT
from partners.client import AsyncPartnerClient, PartnerClient, RetryPolicy, SessionNonces
from partners.errors import (
    DuplicateReceipt,
    Forbidden,
    GatewayUnreachable,
    IdempotencyMismatch,
    InsufficientPoints,
    InvalidPin,
    InvalidSignature,
    NotFound,
    Unauthorized,
    ValidationFailed,
)
from partners.redemption import sign_redemption
from partners.signing import address_of
from tests.partners.conftest import LiveGateway
from tests.partners.netfaults import FaultyProxy
from tests.support import key_for

FAST = RetryPolicy(backoff=0.05, max_backoff=0.2)


def managed(live: LiveGateway, url: str | None = None) -> tuple[PartnerClient, dict[str, object]]:
    partner = live.partner()
    return PartnerClient(url or live.url, str(partner["api_key"]), retry=FAST), partner


def self_custody(
    live: LiveGateway, url: str | None = None, nonces: Callable[[], int] | None = None
) -> tuple[PartnerClient, dict[str, object]]:
    key = key_for(live.unique("partner-key"))
    partner = live.partner(signer_address=address_of(key))
    client = PartnerClient(url or live.url, str(partner["api_key"]), signing_key=key, retry=FAST, nonces=nonces)
    return client, partner


def test_managed_partner_earn_is_confirmed_on_chain(live: LiveGateway) -> None:
    client, partner = managed(live)
    with client:
        assert client.whoami().partner_id == partner["partner_id"]
        ledger = client.ledger()
        assert (ledger.chain_id, ledger.address) == (live.runtime.ledger.chain_id, live.runtime.ledger.address)
        member = client.enroll_member(live.unique("card"), pin="1234")
        assert member.custodial

        accepted = client.earn(member.member_id, "R-1", 1250, "EUR")
        assert (accepted.status, accepted.points, accepted.kind) == ("accepted", 12, "earn")
        confirmed = client.wait_for(accepted.operation_id)

        assert confirmed.status == "confirmed" and confirmed.tx_hash and confirmed.block_number
        [event] = live.events("Earned", confirmed.receipt_ref or "")
        assert (event.args["points"], event.args["spend"], event.tx_hash) == (12, 1250, confirmed.tx_hash)
        view = client.member(member.member_id)
        assert view.balance == 12 == live.balance(member.address)
        assert [op.operation_id for op in client.activity(member.member_id).items] == [accepted.operation_id]


def test_self_custody_partner_signs_its_earn_and_reversal(live: LiveGateway) -> None:
    used: list[int] = []
    nonces = SessionNonces()

    def recorded() -> int:
        used.append(nonces())
        return used[-1]

    client, partner = self_custody(live, nonces=recorded)
    with client:
        member = client.enroll_member(live.unique("card"), pin="1234")
        earn = client.earn(member.member_id, "R-1", 2000, "EUR", wait=True)
        assert earn.status == "confirmed" and earn.points == 20 and earn.earn_month
        # The gateway stored the SDK's own signature: its signer is the partner's address.
        [event] = live.events("Earned", earn.receipt_ref or "")
        assert event.args["partnerId"] == partner["partner_id"]

        refund = client.reverse("R-1", amount_minor=500, reason="one item returned", member_id=member.member_id)
        refund = client.wait_for(refund.operation_id)
        assert refund.points == 5
        [reversed_event] = live.events("Reversed", refund.receipt_ref or "")
        assert reversed_event.args["points"] == 5
        assert live.balance(member.address) == 15 == client.member(member.member_id).balance

        # A second partial refund, found by the earn's operation id, in points this time.
        again = client.reverse(
            "R-1", points=3, reason="another item", refund_id="R-1/2", earn_operation_id=earn.operation_id, wait=True
        )
        assert again.points == 3 and live.balance(member.address) == 12

    # The SDK's nonces (above 2**64: a random prefix, then a counter) are the ones spent on-chain.
    assert len(used) == 3 and all(n > 2**64 for n in used)
    assert all(live.runtime.ledger.partner_nonce_used(int(str(partner["partner_id"])), n) for n in used)


def test_self_custody_partner_without_or_with_a_wrong_key_is_refused(live: LiveGateway) -> None:
    client, partner = self_custody(live)
    with client:
        member = client.enroll_member(live.unique("card"), pin="1234")
    unsigned = PartnerClient(live.url, str(partner["api_key"]), retry=FAST)
    with unsigned, pytest.raises(ValidationFailed) as refused:
        unsigned.earn(member.member_id, "R-1", 1000, "EUR")
    assert (refused.value.status, refused.value.code) == (422, "signature_required")

    impostor = PartnerClient(live.url, str(partner["api_key"]), signing_key=key_for("someone else"), retry=FAST)
    with impostor, pytest.raises(InvalidSignature) as bad:
        impostor.earn(member.member_id, "R-1", 1000, "EUR")
    assert bad.value.code == "invalid_signature"
    assert live.operation_rows(int(str(partner["partner_id"])), "R-1") == []


def test_redemptions_by_member_signature_and_by_pin(live: LiveGateway) -> None:
    client, _ = managed(live)
    wallet_key = key_for(live.unique("wallet"))
    with client:
        wallet_member = client.enroll_member(live.unique("card"), address=address_of(wallet_key))
        custodial = client.enroll_member(live.unique("card"), pin="2468")
        for member in (wallet_member, custodial):
            client.earn(member.member_id, f"buy-{member.member_id}", 10_000, "EUR", wait=True)

        # Self-custody: the till asks, the member's key signs, the till sends the authorization.
        request = client.redemption_request(wallet_member.member_id, "pay-1", 30)
        authorization = sign_redemption(request, wallet_key)
        paid = client.redeem(wallet_member.member_id, "pay-1", 30, authorization=authorization, wait=True)
        [event] = live.events("Redeemed", paid.receipt_ref or "")
        assert event.args["points"] == 30 and live.balance(wallet_member.address) == 70

        # A wallet signing the EIP-712 JSON (eth_signTypedData_v4) gives an authorization too.
        second = client.redemption_request(wallet_member.member_id, "pay-2", 20)
        signed = Account.sign_typed_data(wallet_key, full_message=second.typed_data())
        client.redeem(wallet_member.member_id, "pay-2", 20, authorization=second.authorize(signed.signature), wait=True)
        assert live.balance(wallet_member.address) == 50
        # Someone else's signature is refused at the till already.
        third = client.redemption_request(wallet_member.member_id, "pay-3", 5)
        with pytest.raises(ValueError, match="not from the member"):
            sign_redemption(third, key_for("not the member"))

        # Custodial: the PIN authorizes; a wrong PIN changes nothing.
        with pytest.raises(InvalidPin) as wrong:
            client.redeem(custodial.member_id, "pay-4", 10, pin="0000")
        assert (wrong.value.status, wrong.value.code) == (403, "invalid_pin")
        assert live.balance(custodial.address) == 100
        client.redeem(custodial.member_id, "pay-4", 10, pin="2468", wait=True)
        assert client.member(custodial.member_id).balance == 90 == live.balance(custodial.address)

        with pytest.raises(InsufficientPoints) as short:
            client.redeem(custodial.member_id, "pay-5", 1000, pin="2468")
        assert short.value.balance == 90


def test_gateway_refusals_are_typed_errors(live: LiveGateway) -> None:
    client, partner = managed(live)
    with client:
        member = client.enroll_member(live.unique("card"), pin="1234")
        first = client.earn(member.member_id, "R-1", 1000, "EUR")
        with pytest.raises(DuplicateReceipt) as duplicate:
            client.earn(member.member_id, "R-1", 1000, "EUR")
        assert (duplicate.value.status, duplicate.value.operation_id) == (409, first.operation_id)
        with pytest.raises(NotFound) as unknown:
            client.earn("nobody-here", "R-2", 1000, "EUR")
        assert unknown.value.code == "unknown_member"
        client.earn(member.member_id, "R-3", 1000, "EUR", idempotency_key="till-7-sale-3")
        with pytest.raises(IdempotencyMismatch):
            client.earn(member.member_id, "R-3", 9999, "EUR", idempotency_key="till-7-sale-3")
        with pytest.raises(ValidationFailed) as currency:
            client.earn(member.member_id, "R-4", 1000, "USD")
        assert currency.value.code == "wrong_currency"
    with PartnerClient(live.url, "not-a-key", retry=FAST) as stranger, pytest.raises(Unauthorized) as unauthorized:
        stranger.member(member.member_id)
    assert (unauthorized.value.status, unauthorized.value.code) == (401, "invalid_api_key")
    with PartnerClient(live.url, live.admin_key, retry=FAST) as admin, pytest.raises(Forbidden) as forbidden:
        admin.earn(member.member_id, "R-5", 1000, "EUR")
    assert forbidden.value.code == "wrong_role"
    assert len(live.operation_rows(int(str(partner["partner_id"])), "R-1")) == 1


@pytest.mark.parametrize("custody", ["managed", "self-custody"])
def test_a_dropped_answer_is_retried_with_the_same_key_and_applied_once(live: LiveGateway, custody: str) -> None:
    proxy = FaultyProxy(live.port)
    proxy.drop_answers("POST /v1/earn ")
    client, partner = (managed if custody == "managed" else self_custody)(live, proxy.url)
    try:
        with client:
            member = client.enroll_member(live.unique("card"), pin="1234")
            op = client.earn(member.member_id, "R-1", 4200, "EUR", wait=True)

            # The gateway accepted the first attempt; its answer never reached the SDK.
            [lost] = proxy.swallowed
            assert json.loads(lost)["operation_id"] == op.operation_id
            first, retry = proxy.seen
            key = first.header("Idempotency-Key")
            assert key and retry.header("Idempotency-Key") == key
            assert retry.body == first.body  # a signed earn is not signed again with a new nonce
            assert ("partner_signature" in json.loads(first.body)) == (custody == "self-custody")

            assert len(live.operation_rows(int(str(partner["partner_id"])), "R-1")) == 1
            assert len(live.events("Earned", op.receipt_ref or "")) == 1
            assert live.balance(member.address) == 42 == client.member(member.member_id).balance
    finally:
        proxy.close()


def test_a_503_with_retry_after_is_waited_out(live: LiveGateway) -> None:
    proxy = FaultyProxy(live.port)
    proxy.refuse("POST /v1/earn ", "503 Service Unavailable", {"Retry-After": "1"})
    client, _ = managed(live, proxy.url)
    try:
        with client:
            member = client.enroll_member(live.unique("card"), pin="1234")
            op = client.earn(member.member_id, "R-1", 1000, "EUR", wait=True)
            first, retry = proxy.seen
            assert retry.at - first.at >= 1.0  # the SDK waited as long as it was told
            assert retry.header("Idempotency-Key") == first.header("Idempotency-Key")
            assert len(live.events("Earned", op.receipt_ref or "")) == 1
    finally:
        proxy.close()


def test_an_unreachable_gateway_leaves_a_request_that_can_be_resent(live: LiveGateway) -> None:
    client, partner = managed(live)
    member = client.enroll_member(live.unique("card"), pin="1234")
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    offline = PartnerClient(nowhere, str(partner["api_key"]), retry=RetryPolicy(attempts=2, backoff=0.01))
    with offline, pytest.raises(GatewayUnreachable) as down:
        offline.earn(member.member_id, "R-1", 1500, "EUR")
    request = down.value.request
    assert request is not None and down.value.attempts == 2
    with client:
        op = client.resend(request, wait=True)
        assert client.resend(request).operation_id == op.operation_id  # the same key: the first answer
    assert len(live.operation_rows(int(str(partner["partner_id"])), "R-1")) == 1
    assert live.balance(member.address) == 15


def test_async_client_earn_round_trip(live: LiveGateway) -> None:
    key = key_for(live.unique("async-partner"))
    partner = live.partner(signer_address=address_of(key))

    async def till() -> tuple[str, int, int]:
        async with AsyncPartnerClient(live.url, str(partner["api_key"]), signing_key=key, retry=FAST) as client:
            member = await client.enroll_member(live.unique("card"), pin="1234")
            op = await client.earn(member.member_id, "R-1", 3300, "EUR", wait=True)
            view = await client.member(member.member_id)
            return member.address, op.points or 0, view.balance

    address, points, balance = asyncio.run(till())
    assert points == 33 == balance == live.balance(address)


def test_the_example_till_runs_against_the_gateway(live: LiveGateway) -> None:
    partner = live.partner()
    env = {**os.environ, "LOYALTY_GATEWAY_URL": live.url, "LOYALTY_PARTNER_KEY": str(partner["api_key"])}
    member_id = live.unique("card")

    def till(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "partners/examples/till.py", *args],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "enrolled" in till("enroll", member_id, "--pin", "1357")
    assert "earned 25 points" in till("sale", member_id, "S-1", "25.00")
    assert "took back 10 points" in till("return", "S-1", "10.00")
    assert "paid 5 points" in till("redeem", member_id, "S-2", "5", "--pin", "1357")
    assert "balance 10" in till("balance", member_id)
    address = httpx.get(
        f"{live.url}/v1/members/{member_id}", headers={"Authorization": f"Bearer {partner['api_key']}"}
    ).json()["address"]
    assert live.balance(address) == 10


def test_the_sdk_imports_nothing_of_the_gateway() -> None:
    """Partners get `partners/` alone: importing it must not need the gateway's code."""
    probe = "import sys; sys.modules['gateway'] = None; import partners.client, partners.examples.till; print('ok')"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr
