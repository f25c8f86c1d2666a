"""Batch files through the partner SDK (sync and async) and `loyalty batch`, against a live
gateway on the embedded chain: balances read back from the chain."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from gateway.cli import main
from partners.client import AsyncPartnerClient, PartnerClient, RetryPolicy
from partners.signing import address_of
from tests.partners.conftest import LiveGateway
from tests.support import key_for

FAST = RetryPolicy(backoff=0.05, max_backoff=0.2)


def test_a_managed_partner_submits_a_csv_file_and_follows_it_to_the_chain(live: LiveGateway, tmp_path: Path) -> None:
    partner = live.partner()
    with PartnerClient(live.url, str(partner["api_key"]), retry=FAST) as client:
        members = [client.enroll_member(live.unique("card"), pin="1234") for _ in range(3)]
        rows = [f"earn,{m.member_id},R-{i},{1000 * (i + 1)},EUR" for i, m in enumerate(members)]
        path = tmp_path / "sales.csv"
        path.write_text(
            "kind,member_id,receipt_id,amount_minor,currency\n" + "\n".join(rows) + "\nearn,nobody,R-9,100,EUR\n"
        )
        answer = client.submit_batch(path)
        assert (answer.records, answer.accepted) == (4, 3)
        assert [(r.line, r.code) for r in answer.refused] == [(5, "unknown_member")]
        done = client.wait_for_batch(answer.batch_id, timeout=60)
        assert done.done and done.confirmed == 3
        page = client.batch_status(answer.batch_id, limit=2)
        assert [i.line for i in page.items] == [2, 3] and page.next_cursor == 3
        rest = client.batch_status(answer.batch_id, cursor=3)
        assert [(i.line, i.status) for i in rest.items] == [(4, "confirmed"), (5, "refused")]
        assert [live.balance(m.address) for m in members] == [10, 20, 30]


def test_a_self_custody_client_signs_each_earn_record(live: LiveGateway, tmp_path: Path) -> None:
    key = key_for(live.unique("batch-signer"))
    partner = live.partner(signer_address=address_of(key))
    with PartnerClient(live.url, str(partner["api_key"]), signing_key=key, retry=FAST) as client:
        member = client.enroll_member(live.unique("card"), pin="1234")
        answer = client.submit_batch(
            [
                {
                    "kind": "earn",
                    "member_id": member.member_id,
                    "receipt_id": "S-1",
                    "amount_minor": 2500,
                    "currency": "EUR",
                },
                {
                    "kind": "earn",
                    "member_id": member.member_id,
                    "receipt_id": "S-2",
                    "amount_minor": 500,
                    "currency": "EUR",
                },
            ]
        )
        assert answer.accepted == 2 and not answer.refused
        # A CSV file is read and signed here; refusals name the file's own lines.
        path = tmp_path / "sales.csv"
        path.write_text(
            "kind,member_id,receipt_id,amount_minor,currency\n\n"
            f"earn,{member.member_id},S-3,1000,EUR\nearn,{member.member_id},S-1,1000,EUR\n"
        )
        second = client.submit_batch(path)
        assert second.accepted == 1 and [(r.line, r.code) for r in second.refused] == [(4, "duplicate_receipt")]
        client.wait_for_batch(answer.batch_id, timeout=60)
        assert client.wait_for_batch(second.batch_id, timeout=60).confirmed == 1
        assert live.balance(member.address) == 25 + 5 + 10


def test_the_async_client_submits_and_waits(live: LiveGateway) -> None:
    partner = live.partner()

    async def shop() -> tuple[str, int]:
        async with AsyncPartnerClient(live.url, str(partner["api_key"]), retry=FAST) as client:
            member = await client.enroll_member(live.unique("card"), pin="1234")
            records = [
                {
                    "kind": "earn",
                    "member_id": member.member_id,
                    "receipt_id": f"A-{i}",
                    "amount_minor": 700,
                    "currency": "EUR",
                }
                for i in range(5)
            ]
            answer = await client.submit_batch(records, idempotency_key=live.unique("batch"))
            status = await client.wait_for_batch(answer.batch_id, timeout=60)
            return member.address, status.confirmed

    address, confirmed = asyncio.run(shop())
    assert confirmed == 5 and live.balance(address) == 35


def test_loyalty_batch_submit_and_status(live: LiveGateway, tmp_path: Path) -> None:
    partner = live.partner()
    key = str(partner["api_key"])
    with PartnerClient(live.url, key, retry=FAST) as client:
        member = client.enroll_member(live.unique("card"), pin="1234")
    path = tmp_path / "sales.jsonl"
    records = [
        {"kind": "earn", "member_id": member.member_id, "receipt_id": "C-1", "amount_minor": 1200, "currency": "EUR"},
        {"kind": "earn", "member_id": member.member_id, "receipt_id": "C-1", "amount_minor": 1200, "currency": "EUR"},
        {
            "kind": "award",
            "member_id": member.member_id,
            "receipt_id": "C-2",
            "points": 5,
            "reason": "welcome",
        },  # not a reason code,
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    runner = CliRunner()
    submitted = runner.invoke(
        main, ["batch", "submit", str(path), "--url", live.url, "--api-key", key, "--wait", "--timeout", "60"]
    )
    assert submitted.exit_code == 2, submitted.output  # some lines were refused
    assert "1 of 3 records accepted, 2 refused" in submitted.output
    assert "duplicate_receipt" in submitted.output and "validation_error" in submitted.output
    assert "1 confirmed, 0 rejected" in submitted.output
    batch_id = submitted.output.split("batch ", 1)[1].split(":", 1)[0].strip()
    status = runner.invoke(main, ["batch", "status", batch_id, "--url", live.url, "--api-key", key, "--lines"])
    assert status.exit_code == 0, status.output
    assert "1 confirmed" in status.output and "2 refused" in status.output and "C-1" in status.output
    assert live.balance(member.address) == 12
    other = live.partner()
    hidden = runner.invoke(main, ["batch", "status", batch_id, "--url", live.url, "--api-key", str(other["api_key"])])
    assert hidden.exit_code != 0 and "unknown_batch" in hidden.output
