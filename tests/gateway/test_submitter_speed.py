"""The submitter's fast paths (issue 15) against the slow ones they replace: the hand-encoded
earn batch is byte for byte the ABI encoder's, and the tier watch keeps this process's tier
cache equal to the chain's while reading it only when an earn crosses a threshold."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from gateway.api.main import create_app
from gateway.app.bootstrap import open_runtime
from gateway.chain.ledger import SignedEarn
from gateway.core.config import CoalitionSettings, GatewaySettings, Settings, TierSettings
from gateway.submitter.calldata import earn_calldata
from partners.signing import CampaignEarnMessage, CompactSignature, EarnMessage
from tests.gateway.conftest import Gateway


def _row(i: int, *, sig_len: int, own_address: bool) -> SimpleNamespace:
    sig = secrets.token_bytes(64)
    if sig_len == 65:
        sig += bytes([27 + i % 2])
    return SimpleNamespace(
        partner_id=1 + i,
        member_id=f"m{i}",
        member_address="0x" + secrets.token_hex(20) if own_address else None,
        amount_minor=i * 997 if i % 3 else None,
        receipt_ref="0x" + secrets.token_hex(32),
        nonce=secrets.randbits(200),
        deadline=1_900_000_000 + i,
        signature="0x" + sig.hex(),
        campaign_id=i % 5 if i % 2 else None,  # (r2) some rows name a campaign
    )


def _message(row: SimpleNamespace, addresses: dict[str, str]) -> EarnMessage | CampaignEarnMessage:
    member, spend, ref = row.member_address or addresses[row.member_id], int(row.amount_minor or 0), row.receipt_ref
    if row.campaign_id:
        return CampaignEarnMessage(
            row.partner_id, member, spend, row.campaign_id, bytes.fromhex(ref[2:]), row.nonce, row.deadline
        )
    return EarnMessage(row.partner_id, member, spend, bytes.fromhex(ref[2:]), row.nonce, row.deadline)


def test_the_hand_encoded_earn_batch_is_the_abi_encoders(gw: Gateway) -> None:
    ledger = gw.runtime.ledger
    rows = [_row(i, sig_len=64 + i % 2, own_address=i % 4 != 0) for i in range(23)]
    addresses = {row.member_id: "0x" + secrets.token_hex(20) for row in rows}
    expected = ledger.encode_call(
        "earnBatch",
        [
            SignedEarn(
                _message(row, addresses), CompactSignature.from_bytes(bytes.fromhex(row.signature[2:]))
            ).as_tuple()
            for row in rows
        ],
    )
    selector = ledger.encode_call("earnBatch", [])[:4]
    assert earn_calldata(selector, rows, addresses) == expected
    assert earn_calldata(selector, [], {}) == ledger.encode_call("earnBatch", [])
    with pytest.raises(ValueError):
        earn_calldata(selector, [SimpleNamespace(**{**vars(rows[1]), "partner_id": 2**32})], addresses)


@pytest.fixture
def tiered(tmp_path: Path) -> Iterator[Gateway]:
    """A gateway whose second tier starts at 25 qualifying points (an earn of 1,000 gives 10)."""
    tiers = [
        TierSettings(name="Base", threshold=0, multiplier_bps=10_000),
        TierSettings(name="Silver", threshold=25, multiplier_bps=20_000),
        TierSettings(name="Gold", threshold=10_000, multiplier_bps=30_000),
    ]
    settings = Settings(
        coalition=CoalitionSettings(tiers=tiers),
        gateway=GatewaySettings(batch_window_ms=0, confirmations=0),
    )
    runtime = open_runtime(settings, data_dir=tmp_path / "data", log=False)
    app = create_app(runtime, run_submitter=False)
    admin_key = (tmp_path / "data" / "admin.key").read_text().strip()
    with TestClient(app) as client:
        yield Gateway(runtime, client, app.state.submitter, admin_key)
    runtime.close()


def test_the_tier_cache_follows_the_chain_and_reads_only_on_a_crossing(tiered: Gateway) -> None:
    gw = tiered
    key = gw.partner()["api_key"]
    assert gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"}).status_code == 201
    found = gw.runtime.member_address("card-1")
    assert found is not None
    address, ledger, watch = found[0], gw.runtime.ledger, gw.submitter.receipts.tiers
    reads: list[int] = []
    real_read = watch.read
    watch.read = lambda members, block: (reads.append(len(members)), real_read(members, block))[-1]  # type: ignore[method-assign]
    expected_reads = [1, 1, 2, 2, 2]  # the first earn (unknown), then the crossing of 25 only
    for i, (qualifying, tier) in enumerate([(10, 0), (20, 0), (30, 1), (50, 1), (70, 1)]):
        body = {"member_id": "card-1", "receipt_id": f"R-{i}", "amount_minor": 1000, "currency": "EUR"}
        assert gw.post("/v1/earn", key, body).status_code == 202
        gw.settle()
        assert ledger.qualifying_points(address) == qualifying
        assert ledger.tier_of(address) == tier
        assert gw.runtime.cached_tier(address) == tier
        assert len(reads) == expected_reads[i], (i, reads)
        assert watch.qualifying[address] == qualifying
