"""Batch intake (POST /v1/batches, GET /v1/batches/{id}): records checked one by one, the
accepted ones stored together and carried to the chain, the refused ones leaving nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.api.schemas.batches import CSV, NDJSON, read_batch
from gateway.core.errors import LoyaltyError
from gateway.operations.batches import MAX_RECORDS
from partners.signing import EarnMessage, Receipt, address_of, sign
from tests.gateway.conftest import Gateway
from tests.support import key_for

HEADER = "kind,member_id,receipt_id,amount_minor,currency,points,reason,refund_id"


def post_batch(
    gw: Gateway, key: str, body: str | bytes, content_type: str = CSV, idempotency_key: str | None = None
) -> Any:
    headers = {**gw.headers(key, idempotency_key), "Content-Type": content_type}
    return gw.client.post("/v1/batches", content=body if isinstance(body, bytes) else body.encode(), headers=headers)


def ndjson(*records: dict[str, Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def balance(gw: Gateway, key: str, member_id: str) -> int:
    return int(gw.get(f"/v1/members/{member_id}", key).json()["balance"])


def refusals(response: Any) -> dict[int, str]:
    return {r["line"]: r["code"] for r in response.json()["refused"]}


def lines(gw: Gateway, key: str, batch_id: str, query: str = "") -> list[dict[str, Any]]:
    response = gw.get(f"/v1/batches/{batch_id}{query}", key)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def enrolled(gw: Gateway, *members: str) -> dict[str, Any]:
    partner = gw.partner()
    for member in members:
        assert gw.post("/v1/members", partner["api_key"], {"member_id": member, "pin": "1234"}).status_code == 201
    return partner


def test_a_csv_batch_accepts_the_good_records_refuses_each_bad_one_and_reaches_the_chain(gw: Gateway) -> None:
    partner = enrolled(gw, "card-1", "card-2")
    key = partner["api_key"]
    body = "\r\n".join(
        [
            HEADER,  # line 1
            "earn,card-1,R-1,1250,EUR,,,",  # 2: 12 points
            "earn,card-2,R-2,10000,EUR,,,",  # 3: 100 points
            "",  # 4: blank, skipped
            'earn,card-1,"R-3,x",500,EUR,,,',  # 5: quoted comma: a receipt id the schema refuses
            'earn,card-1,"R-4,500,EUR,,,',  # 6: a quote left open
            "earn,card-1,R-5,500,EUR,,",  # 7: one field short
            "earn,card-1,R-6,12.5,EUR,,,",  # 8: not an integer
            "earn,card-1,R-7,-5,EUR,,,",  # 9: negative
            "earn,card-1,R-8,99999999999999999999999,EUR,,,",  # 10: more than a spend may be
            "earn,nobody,R-9,500,EUR,,,",  # 11: unknown member
            "earn,card-1,R-10,500,USD,,,",  # 12: the partner's currency is EUR
            "earn,card-2,R-1,700,EUR,,,",  # 13: R-1 again, inside the batch
            "earn,card-1,R-11,50,EUR,,,",  # 14: earns no point
            "award,card-1,A-1,,,10,welcome,",  # 15: not one of the award reasons
            "gift,card-1,G-1,100,EUR,,,",  # 16: no such kind
            "earn,card-1,R-12,300,EUR,,nice,",  # 17: a field an earn does not have
            '"earn","card-2","R-13","2500","EUR",,,',  # 18: quoted everywhere: fine
        ]
    )
    response = post_batch(gw, key, body + "\r\n")
    assert response.status_code == 202, response.text
    answer = response.json()
    assert (answer["records"], answer["accepted"]) == (16, 3)
    assert refusals(response) == {
        5: "validation_error",
        6: "malformed_record",
        7: "malformed_record",
        8: "validation_error",
        9: "validation_error",
        10: "validation_error",
        11: "unknown_member",
        12: "wrong_currency",
        13: "duplicate_receipt",
        14: "zero_points",
        15: "validation_error",
        16: "validation_error",
        17: "validation_error",
    }
    by_line = {r["line"]: r for r in answer["refused"]}
    assert by_line[13]["receipt_id"] == "R-1" and "earlier line" in by_line[13]["message"]
    assert "amount_minor" in by_line[8]["message"] and "the header 8" in by_line[7]["message"]
    # Nothing is stored for a refused record: three operations, three custody receipts.
    assert gw.count("operations") == 3 and gw.count("receipts") == 3
    accepted = lines(gw, key, answer["batch_id"], "?status=accepted")
    assert [(i["line"], i["receipt_id"], i["points"]) for i in accepted] == [
        (2, "R-1", 12),
        (3, "R-2", 100),
        (18, "R-13", 25),
    ]
    gw.settle()
    view = gw.get(f"/v1/batches/{answer['batch_id']}", key).json()
    assert view["done"] and view["counts"]["confirmed"] == 3 and view["counts"]["refused"] == 13
    confirmed = [i for i in view["items"] if i["status"] == "confirmed"]
    assert [i["line"] for i in confirmed] == [2, 3, 18] and all(i["tx_hash"] and i["block_number"] for i in confirmed)
    assert [i["line"] for i in view["items"]] == sorted(i["line"] for i in view["items"])  # refused ones interleaved
    assert balance(gw, key, "card-1") == 12 and balance(gw, key, "card-2") == 125


def test_json_lines_mix_earns_and_reversals(gw: Gateway) -> None:
    partner = enrolled(gw, "card-1")
    key = partner["api_key"]
    assert (
        gw.post(
            "/v1/earn", key, {"member_id": "card-1", "receipt_id": "R-0", "amount_minor": 5000, "currency": "EUR"}
        ).status_code
        == 202
    )
    gw.settle()
    body = (
        ndjson(
            {"kind": "earn", "member_id": "card-1", "receipt_id": "R-1", "amount_minor": 2000, "currency": "EUR"},
            {"kind": "reversal", "receipt_id": "R-0", "points": 10, "reason": "returned a mug"},
            {"kind": "reversal", "receipt_id": "R-0", "refund_id": "RF-2", "amount_minor": 1000, "reason": "half"},
            {"kind": "reversal", "receipt_id": "R-1", "points": 1, "reason": "not on the chain yet"},
            {"kind": "reversal", "receipt_id": "nope", "points": 1, "reason": "no such earn"},
            {"kind": "reversal", "receipt_id": "R-0", "refund_id": "RF-3", "points": 50, "reason": "more than left"},
            {"kind": "earn", "member_id": "card-1", "receipt_id": "R-2", "amount_minor": "100", "currency": "EUR"},
        )
        + "{not json\n"
        + "[1, 2]\n"
        + '{"kind": "refund", "redemption_receipt_id": "X-1", "receipt_id": "RF-9", "points": 1, "reason": "x"}\n'
        + '{"kind": "migration", "member_id": "card-1"}\n'
    )
    response = post_batch(gw, key, body, NDJSON)
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 3
    assert refusals(response) == {
        4: "earn_not_confirmed",
        5: "unknown_receipt",
        6: "reversal_exceeds_earn",
        7: "validation_error",  # "100" is a string: amounts are JSON integers
        8: "malformed_record",
        9: "malformed_record",
        10: "unknown_redemption",
        11: "validation_error",  # not a kind a batch carries
    }
    gw.settle()
    view = gw.get(f"/v1/batches/{response.json()['batch_id']}", key).json()
    assert view["done"] and view["counts"]["confirmed"] == 3
    reversals = [i for i in view["items"] if i["kind"] == "reversal"]
    assert [(i["receipt_id"], i["points"], i["status"]) for i in reversals] == [
        ("R-0", 10, "confirmed"),
        ("RF-2", 10, "confirmed"),
    ]
    assert balance(gw, key, "card-1") == 50 + 20 - 10 - 10


def test_all_four_kinds_in_one_csv_file_reach_the_chain(gw: Gateway) -> None:
    partner = enrolled(gw, "card-1")
    key = partner["api_key"]
    earn = {"member_id": "card-1", "receipt_id": "R-0", "amount_minor": 5000, "currency": "EUR"}
    assert gw.post("/v1/earn", key, earn).status_code == 202
    gw.settle()
    spend = {"member_id": "card-1", "receipt_id": "P-1", "points": 20, "authorization": {"pin": "1234"}}
    assert gw.post("/v1/redemptions", key, spend).status_code == 202
    gw.settle()
    assert balance(gw, key, "card-1") == 30
    body = "\n".join(
        [
            "kind,member_id,receipt_id,amount_minor,currency,points,reason,redemption_receipt_id",
            "earn,card-1,R-1,1000,EUR,,,",  # 2: 10 points
            "award,card-1,A-1,,,7,signup,",  # 3
            "award,card-1,A-1,,,7,signup,",  # 4: the same award again
            "reversal,,R-0,,,5,returned a mug,",  # 5
            "refund,,RF-1,,,8,one item back,P-1",  # 6
            "refund,,RF-2,,,15,the rest?,P-1",  # 7: 20 redeemed, 8 refunded on line 6
            "award,card-1,A-2,,,0,bonus,",  # 8: no points
            "refund,,RF-3,,,1,x,P-404",  # 9: no such redemption
        ]
    )
    response = post_batch(gw, key, body + "\n")
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 4
    assert refusals(response) == {
        4: "duplicate_receipt",
        7: "refund_exceeds_redemption",
        8: "validation_error",
        9: "unknown_redemption",
    }
    gw.settle()
    view = gw.get(f"/v1/batches/{response.json()['batch_id']}", key).json()
    confirmed = [(i["line"], i["kind"], i["status"]) for i in view["items"] if i["status"] != "refused"]
    assert confirmed == [
        (2, "earn", "confirmed"),
        (3, "award", "confirmed"),
        (5, "reversal", "confirmed"),
        (6, "refund", "confirmed"),
    ]
    assert balance(gw, key, "card-1") == 30 + 10 + 7 - 5 + 8


def test_receipt_ids_are_used_once_across_batches_and_single_operations(gw: Gateway) -> None:
    partner = enrolled(gw, "card-1")
    key = partner["api_key"]
    assert (
        gw.post(
            "/v1/earn", key, {"member_id": "card-1", "receipt_id": "R-1", "amount_minor": 500, "currency": "EUR"}
        ).status_code
        == 202
    )
    body = f"{HEADER}\nearn,card-1,R-1,500,EUR,,,\nearn,card-1,R-2,500,EUR,,,\n"
    first = post_batch(gw, key, body)
    assert first.json()["accepted"] == 1 and refusals(first) == {2: "duplicate_receipt"}
    again = post_batch(gw, key, body)  # the same file sent twice, without an Idempotency-Key
    assert again.status_code == 202 and again.json()["accepted"] == 0
    assert refusals(again) == {2: "duplicate_receipt", 3: "duplicate_receipt"}
    single = gw.post(
        "/v1/earn", key, {"member_id": "card-1", "receipt_id": "R-2", "amount_minor": 500, "currency": "EUR"}
    )
    assert single.status_code == 409 and single.json()["error"]["code"] == "duplicate_receipt"
    assert gw.count("operations") == 2
    # Another partner's receipt ids are its own.
    other = gw.partner("FreshMart")
    assert post_batch(gw, other["api_key"], body).json()["accepted"] == 2


def test_an_idempotency_key_gives_the_first_answer_again(gw: Gateway) -> None:
    partner = enrolled(gw, "card-1")
    key = partner["api_key"]
    body = f"{HEADER}\nearn,card-1,R-1,500,EUR,,,\nearn,card-1,R-2,500,EUR,,,\n"
    first = post_batch(gw, key, body, idempotency_key="batch-1")
    again = post_batch(gw, key, body, idempotency_key="batch-1")
    assert again.status_code == 202 and again.json() == first.json() and first.json()["accepted"] == 2
    assert gw.count("operations") == 2 and gw.count("intake_batches") == 1
    other = post_batch(gw, key, body + "earn,card-1,R-3,500,EUR,,,\n", idempotency_key="batch-1")
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_mismatch"
    as_json_lines = post_batch(gw, key, body, NDJSON, idempotency_key="batch-1")  # same bytes, other type
    assert as_json_lines.status_code == 422
    assert gw.count("operations") == 2


def test_requests_that_cannot_be_a_batch_are_refused_whole(gw: Gateway) -> None:
    partner = enrolled(gw, "card-1")
    key = partner["api_key"]

    def code(response: Any) -> tuple[int, str]:
        return response.status_code, response.json()["error"]["code"]

    too_many = HEADER + "\n" + "".join(f"earn,card-1,R-{i},500,EUR,,,\n" for i in range(MAX_RECORDS + 1))
    assert code(post_batch(gw, key, too_many)) == (413, "too_many_records")
    assert code(post_batch(gw, key, "x" * (16 * 1024 * 1024 + 1))) == (413, "payload_too_large")
    assert code(post_batch(gw, key, "{}", "application/json")) == (400, "unsupported_content_type")
    assert code(post_batch(gw, key, "a,b", "text/plain")) == (400, "unsupported_content_type")
    assert code(post_batch(gw, key, HEADER + "\n")) == (400, "malformed_batch")  # no record
    assert code(post_batch(gw, key, "")) == (400, "malformed_batch")
    assert code(post_batch(gw, key, "\nearn,card-1,R-1,500,EUR,,,\n")) == (400, "malformed_batch")  # no header
    assert code(post_batch(gw, key, "kind,member,receipt_id\nearn,card-1,R-1\n")) == (400, "malformed_batch")
    assert code(post_batch(gw, key, "member_id,receipt_id\ncard-1,R-1\n")) == (400, "malformed_batch")
    assert code(post_batch(gw, key, HEADER.encode() + b"\nearn,card-1,R-\xff,500,EUR,,,\n")) == (400, "malformed_batch")
    # An admin key does not submit a partner's operations.
    assert code(post_batch(gw, gw.admin_key, HEADER + "\nearn,card-1,R-1,500,EUR,,,\n")) == (403, "wrong_role")
    assert gw.count("operations") == 0 and gw.count("intake_batches") == 0
    # The content type may carry parameters.
    ok = post_batch(gw, key, HEADER + "\nearn,card-1,R-1,500,EUR,,,\n", "text/csv; charset=utf-8")
    assert ok.status_code == 202 and ok.json()["accepted"] == 1


def test_a_batch_is_seen_by_its_partner_and_the_operator_only(gw: Gateway) -> None:
    partner = enrolled(gw, "card-1")
    key = partner["api_key"]
    body = HEADER + "\n" + "".join(f"earn,card-1,R-{i},500,EUR,,,\n" for i in range(5)) + "earn,x,R-x,1,EUR,,,\n"
    batch_id = post_batch(gw, key, body).json()["batch_id"]
    other = gw.partner("FreshMart")
    missing = gw.get(f"/v1/batches/{batch_id}", other["api_key"])
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_batch"
    assert gw.get("/v1/batches/" + "0" * 32, key).status_code == 404
    auditor = gw.post("/v1/api-keys", gw.admin_key, {"role": "auditor"}).json()["api_key"]
    assert gw.get(f"/v1/batches/{batch_id}", auditor).status_code == 403
    assert gw.get(f"/v1/batches/{batch_id}", gw.admin_key).json()["accepted"] == 5
    # Pages of lines, refused ones included, in line order.
    first = gw.get(f"/v1/batches/{batch_id}?limit=4", key).json()
    assert [i["line"] for i in first["items"]] == [2, 3, 4, 5] and first["next_cursor"] == 5
    rest = gw.get(f"/v1/batches/{batch_id}?limit=4&cursor=5", key).json()
    assert [(i["line"], i["status"]) for i in rest["items"]] == [(6, "accepted"), (7, "refused")]
    assert rest["next_cursor"] is None and rest["items"][1]["error"]["code"] == "unknown_member"
    assert [i["line"] for i in lines(gw, key, batch_id, "?status=refused")] == [7]
    for query in ("limit=0", "limit=10001", "cursor=-1", "status=lost"):
        assert gw.get(f"/v1/batches/{batch_id}?{query}", key).status_code == 422, query


def test_a_self_custody_partner_signs_each_record(gw: Gateway) -> None:
    signer = key_for("batch-signer")
    partner = gw.partner(signer_address=address_of(signer))
    key = partner["api_key"]
    member = gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"}).json()
    issued_at = "2026-11-22T10:15:00+00:00"

    def signed(receipt_id: str, nonce: int, amount: int = 4200) -> dict[str, Any]:
        receipt = Receipt(
            kind="earn",
            partner_id=partner["partner_id"],
            receipt_id=receipt_id,
            member_id="card-1",
            amount_minor=amount,
            currency="EUR",
            issued_at=issued_at,
        )
        message = EarnMessage(partner["partner_id"], member["address"], amount, receipt.ref(), nonce, 2**40)
        return {
            "kind": "earn",
            "member_id": "card-1",
            "receipt_id": receipt_id,
            "amount_minor": amount,
            "currency": "EUR",
            "issued_at": issued_at,
            "partner_signature": {
                "signature": sign(gw.runtime.ledger.domain, message, signer).hex(),
                "nonce": nonce,
                "deadline": 2**40,
            },
        }

    forged = signed("S-4", 4)
    forged["amount_minor"] = 9999  # the signature covers 4200
    body = ndjson(
        signed("S-1", 1),
        signed("S-2", 2),
        signed("S-3", 2),  # the nonce of line 2 again
        forged,
        {"kind": "earn", "member_id": "card-1", "receipt_id": "S-5", "amount_minor": 100, "currency": "EUR"},
    )
    response = post_batch(gw, key, body, NDJSON)
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 2
    assert refusals(response) == {3: "nonce_already_used", 4: "invalid_signature", 5: "signature_required"}
    gw.settle()
    assert balance(gw, key, "card-1") == 84
    # The same nonce in a later batch: on-chain already.
    again = post_batch(gw, key, ndjson(signed("S-6", 1)), NDJSON)
    assert refusals(again) == {1: "nonce_already_used"}
    # And as CSV, nested fields as dotted columns.
    row = signed("S-7", 7)
    sig = row["partner_signature"]
    csv_body = (
        "kind,member_id,receipt_id,amount_minor,currency,issued_at,partner_signature.signature,"
        "partner_signature.nonce,partner_signature.deadline\n"
        f"earn,card-1,S-7,4200,EUR,{issued_at},{sig['signature']},{sig['nonce']},{sig['deadline']}\n"
    )
    assert post_batch(gw, key, csv_body).json()["accepted"] == 1


def test_ten_thousand_records_are_accepted_in_one_request(gw: Gateway) -> None:
    partner = gw.partner()
    key = partner["api_key"]
    for i in range(20):
        gw.post("/v1/members", key, {"member_id": f"m{i}", "address": "0x" + f"{i + 1:040x}"})
    body = HEADER + "\n" + "".join(f"earn,m{i % 20},R-{i},{1000 + i},EUR,,,\n" for i in range(MAX_RECORDS))
    response = post_batch(gw, key, body)
    assert response.status_code == 202 and response.json()["accepted"] == MAX_RECORDS, response.text[:500]
    assert gw.count("operations") == MAX_RECORDS and gw.count("intake_records") == MAX_RECORDS
    view = gw.get(f"/v1/batches/{response.json()['batch_id']}?limit=10000", key).json()
    assert len(view["items"]) == MAX_RECORDS and view["counts"]["accepted"] == MAX_RECORDS
    with gw.runtime.sessions() as session:  # each signed with its own nonce
        distinct = session.execute(sa.text("SELECT count(DISTINCT nonce) FROM operations")).scalar_one()
    assert distinct == MAX_RECORDS


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("\ufeffkind,member_id\nearn,a\n", [2]),  # a byte-order mark (spreadsheets write one)
        ("kind,member_id\r\n\r\nearn,a\r\n\r\nearn,b\r\n", [3, 5]),
        ("kind,member_id\nearn,a", [2]),  # no final line break
    ],
)
def test_csv_lines_are_the_files_own_lines(body: str, expected: list[int]) -> None:
    records, refused = read_batch(body.encode(), CSV)
    assert sorted([r.line for r in records] + [r.line for r in refused]) == expected


def test_json_lines_count_from_one() -> None:
    records, refused = read_batch(b'\n{"kind": "earn"}\n\n{"kind": "reversal"}\n', NDJSON)
    assert [r.line for r in refused] == [2, 4] and not records
    with pytest.raises(LoyaltyError):
        read_batch(b"\n\n", NDJSON)
