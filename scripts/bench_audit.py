"""Speed of the audit: the replay alone, and a whole chain-only verification on anvil.

Default: builds a stream of decoded ledger events (earns, redemptions, reversals, month
changes across many members and months) and times the same `Replay` that `loyalty audit
verify` uses, once the events are fetched.

`--chain`: puts `--operations` earns on a real anvil node (batches of `--batch`, signed in
advance by worker processes, across `--partners` partners and `--members` members, the
clock moved on a month at a time over `--months`), then times what `loyalty audit verify
--chain-only` does (fetch every event, read block times, replay, compare with the
contract's views), phase by phase. `--url URL --record FILE` reuses a node that already
holds such a ledger (the record is written after a generation).

    .venv/bin/python scripts/bench_audit.py [--operations 500000] [--json FILE]
    .venv/bin/python scripts/bench_audit.py --chain [--operations 1000000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from eth_utils import keccak, to_checksum_address
from rich.console import Console
from rich.progress import Progress
from web3 import Web3

from gateway.audit.metrics import metrics_of
from gateway.audit.report import load_history
from gateway.audit.verify import AuditReport, Replay, verify_chain
from gateway.chain.backends import AnvilNode, RpcChain, anvil_dev_keys
from gateway.chain.ledger import Ledger, LedgerEvent, Sender, SignedEarn, rpc, wait_for_receipt
from gateway.core.config import get_settings
from gateway.points.rules import month_of, month_start
from partners.signing import MAX_OP_POINTS, Domain, EarnMessage, address_of, sign

ZERO = "0x0000000000000000000000000000000000000000"


def ev(name: str, **args: object) -> LedgerEvent:
    return LedgerEvent(name, args, 0, "0x", 0)


def stream(operations: int, members: int, seed: int = 7) -> list[tuple[LedgerEvent, int]]:
    rng = random.Random(seed)
    month = month_of(int(datetime(2026, 1, 15, tzinfo=UTC).timestamp()))
    addresses = [f"0x{i:040x}" for i in range(1, members + 1)]
    events: list[tuple[LedgerEvent, int]] = [
        (ev("TiersSet", tiers=[(0, 10_000), (500, 12_500), (2_000, 15_000)]), month),
        (ev("ExpiryPolicySet", months=12), month),
    ]
    for pid in (1, 2, 3):
        events += [
            (ev("PartnerAdded", partnerId=pid, signer=ZERO, currency=b"EUR"), month),
            (ev("PartnerUpdated", partnerId=pid, signer=ZERO, ratePoints=1, ratePerMinorUnits=100), month),
            (ev("AllowanceSet", partnerId=pid, allowance=10**15), month),
        ]
    # A tiny model of balances to emit only valid operations (the replay checks them).
    shadow = Replay()
    for e, m in events:
        shadow.apply(e, m)
    earns: list[tuple[int, bytes, str, int]] = []
    per_month = max(1, operations // 36)
    for n in range(operations):
        if n and n % per_month == 0:
            month += 1
        kind = rng.random()
        member = rng.choice(addresses)
        live = shadow.model.balance(member, month)
        if kind < 0.75 or live < 10:
            pid = rng.randint(1, 3)
            spend = rng.randint(100, 50_000)
            multiplier = shadow.model.tiers[shadow.model.tier_index(member, month)][1]
            points = shadow.model.points_for(shadow.model.partners[pid], spend, multiplier)
            ref = n.to_bytes(32, "big")
            e = ev(
                "Earned",
                partnerId=pid,
                member=member,
                receiptRef=ref,
                spend=spend,
                points=points,
                expiryMonth=month + 12,
            )
            earns.append((pid, ref, member, points))
        elif kind < 0.9:
            e = ev(
                "Redeemed",
                partnerId=rng.randint(1, 3),
                member=member,
                receiptRef=b"\0" * 32,
                points=rng.randint(1, live),
            )
        else:
            pid, ref, owner, issued = rng.choice(earns)
            done = shadow.reversed.get((pid, ref), 0)
            if issued - done < 1 or shadow.model.balance(owner, month) < 1:
                continue
            e = ev("Reversed", partnerId=pid, member=owner, receiptRef=b"\1" * 32, points=1, earnReceiptRef=ref)
        shadow.apply(e, month)
        events.append((e, month))
    return events


# ------------------------------------------------------------------ on anvil

FAR = 2**40
GAS_PER_EARN = 140_000  # 30k-80k measured (a member's first earn of a month costs most); only gas used is paid
GAS_CAP = 58_000_000  # under anvil's 60M block
PRUNE_STATES = 8  # states anvil keeps in memory; the audit reads views at the head
MAX_PENDING = 2  # transactions allowed to wait in anvil's pool


class EarnSigner:
    """Signs earns ~10x faster than the SDK's general path (separator and type hash computed
    once, words packed by hand, coincurve directly); checked against the SDK on the first."""

    def __init__(self, domain: Domain, keys: dict[int, str]) -> None:
        import coincurve

        self.separator = domain.separator()
        self.type_hash = keccak(text=EarnMessage.type_string())
        self.keys = {pid: coincurve.PrivateKey(bytes.fromhex(k[2:])) for pid, k in keys.items()}

    def sign(self, pid: int, member: bytes, spend: int, ref: bytes, nonce: int) -> tuple[bytes, bytes]:
        words = (
            self.type_hash
            + pid.to_bytes(32, "big")
            + member.rjust(32, b"\0")
            + spend.to_bytes(32, "big")
            + MAX_OP_POINTS.to_bytes(32, "big")
            + ref
            + nonce.to_bytes(32, "big")
            + FAR.to_bytes(32, "big")
        )
        digest = keccak(b"\x19\x01" + self.separator + keccak(words))
        signature = self.keys[pid].sign_recoverable(digest, hasher=None)
        vs = (signature[64] << 255) | int.from_bytes(signature[32:64], "big")
        return signature[:32], vs.to_bytes(32, "big")


@dataclass(frozen=True)
class Plan:
    operations: int
    members: int
    partners: int
    batch: int
    chain_id: int
    ledger: str

    def member(self, i: int) -> bytes:
        return keccak(b"bench-audit-member" + i.to_bytes(8, "big"))[:20]

    def earn(self, i: int) -> tuple[int, bytes, int, bytes, int]:
        """(partner, member, spend, receipt ref, nonce) of the i-th earn; nonces are unique."""
        h = keccak(i.to_bytes(8, "big"))
        member = self.member(int.from_bytes(h[:4], "big") % self.members)
        return i % self.partners + 1, member, 100 + int.from_bytes(h[4:8], "big") % 50_000, h, i + 1


_worker: tuple[Plan, EarnSigner, bytes] | None = None


def _init_worker(plan: Plan, keys: dict[int, str], selector: bytes) -> None:
    global _worker
    _worker = (plan, EarnSigner(Domain(plan.chain_id, plan.ledger), keys), selector)


def batch_calldata(b: int) -> bytes:
    """earnBatch(EarnOp[]) of batch b, ABI-encoded by hand: every field is a static word."""
    assert _worker is not None
    plan, signer, selector = _worker
    first, last = b * plan.batch, min((b + 1) * plan.batch, plan.operations)
    out = [selector, (32).to_bytes(32, "big"), (last - first).to_bytes(32, "big")]
    for i in range(first, last):
        pid, member, spend, ref, nonce = plan.earn(i)
        r, vs = signer.sign(pid, member, spend, ref, nonce)
        out += [
            pid.to_bytes(32, "big"),
            member.rjust(32, b"\0"),
            spend.to_bytes(32, "big"),
            MAX_OP_POINTS.to_bytes(32, "big"),
            bytes(32),  # (r2) campaignId 0: a plain earn, signed as `Earn`
            ref,
            nonce.to_bytes(32, "big"),
            FAR.to_bytes(32, "big"),
            r,
            vs,
        ]
    return b"".join(out)


def _keep_pool_short(chain: RpcChain, most: int = MAX_PENDING) -> None:
    """Waits until at most `most` transactions wait in anvil's pool. Sent faster than mined,
    they pile up there and anvil's memory with them (7 GB and climbing by block 1,278); and
    anvil mines one block per arriving transaction, so a backlog only drains with help."""
    polls = 0
    while int(rpc(chain.w3, "txpool_status", [])["pending"], 16) > most:
        polls += 1
        if polls % 20 == 0:
            rpc(chain.w3, "evm_mine", [])
        time.sleep(0.01)


def generate(console: Console, chain: RpcChain, args: argparse.Namespace) -> tuple[Ledger, float]:
    """Deploys a ledger and puts `args.operations` earns on it; returns it and the seconds taken."""
    start = time.perf_counter()
    admin = Sender(chain.w3, anvil_dev_keys()[0])
    relayer = Sender(chain.w3, anvil_dev_keys()[1])
    ledger = Ledger.deploy(admin, get_settings().coalition)
    keys = {}
    for n in range(args.partners):
        key = "0x" + keccak(text=f"bench-audit-partner-{n}").hex()
        pid = ledger.add_partner(
            admin, signer=address_of(key), rate_points=1, rate_per_minor_units=100, currency="EUR", allowance=10**15
        )
        keys[pid] = key
    plan = Plan(args.operations, args.members, args.partners, args.batch, ledger.chain_id, ledger.address)
    selector = ledger.encode_call("earnBatch", [])[:4]
    # The hand-made encoding and signatures must be the SDK's, byte for byte.
    _init_worker(plan, keys, selector)
    sample = [plan.earn(i) for i in range(min(plan.batch, plan.operations))]
    expected = ledger.encode_call(
        "earnBatch",
        [
            SignedEarn(
                m := EarnMessage(p, to_checksum_address(a), s, r, n, FAR), sign(ledger.domain, m, keys[p])
            ).as_tuple()
            for p, a, s, r, n in sample
        ],
    )
    assert batch_calldata(0) == expected, "the fast signer disagrees with partners.signing"
    batches = -(-plan.operations // plan.batch)
    per_month = max(1, -(-batches // args.months))
    nonce = int(rpc(chain.w3, "eth_getTransactionCount", [relayer.address, "pending"]), 16)
    last_hash = ""
    with (
        Progress(console=console, transient=True) as progress,
        multiprocessing.get_context("fork").Pool(args.workers, _init_worker, (plan, keys, selector)) as pool,
    ):
        task = progress.add_task("signing and sending earns", total=plan.operations)
        for b, data in enumerate(pool.imap(batch_calldata, range(batches), chunksize=4)):
            if b and b % per_month == 0:
                rpc(chain.w3, "evm_increaseTime", [31 * 86_400])  # the next block is a month later
            raw, _ = relayer.sign(ledger.address, data, nonce=nonce, gas=min(GAS_CAP, GAS_PER_EARN * plan.batch))
            last_hash = rpc(chain.w3, "eth_sendRawTransaction", ["0x" + raw.hex()])
            nonce += 1
            _keep_pool_short(chain)
            progress.update(task, completed=min((b + 1) * plan.batch, plan.operations))
    _keep_pool_short(chain, 0)
    receipt = wait_for_receipt(chain.w3, last_hash, timeout=600)
    assert receipt["status"] == 1, "the last batch reverted"
    return ledger, time.perf_counter() - start


def audit(console: Console, w3: Web3, ledger: Ledger) -> tuple[AuditReport, dict[str, float]]:
    """`loyalty audit verify --chain-only`, timed phase by phase."""
    marks: list[tuple[str, float]] = []

    def stage(name: str) -> None:
        marks.append((name, time.perf_counter()))

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("reading ledger events", total=1)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        start = time.perf_counter()
        report = verify_chain(w3, ledger, from_block=ledger.deployment_block, progress=advance, stage=stage)
        end = time.perf_counter()
    phases = {}
    for (name, at), (_, until) in zip(marks, [*marks[1:], ("end", end)], strict=True):
        phases[name] = round(until - at, 2)
    phases["total"] = round(end - start, 2)
    return report, phases


def chain_bench(console: Console, args: argparse.Namespace) -> dict[str, object]:
    generation = None
    record = Path(args.record) if args.record else None
    node: AnvilNode | None = None
    if args.url:
        chain: RpcChain = RpcChain(args.url, timeout=600)
    else:
        # Without pruning anvil keeps every block's whole state in memory (17 GB by block 750;
        # 0.7 GB at block 300 with 8 states kept).
        node = AnvilNode(extra_args=("--prune-history", str(PRUNE_STATES)))
        chain = RpcChain(node.url, timeout=600)
    try:
        if record is not None and record.exists():
            saved = json.loads(record.read_text())
            ledger = Ledger(chain.w3, saved["address"])
            ledger.deployment_block = saved["deployment_block"]
            console.print(f"reusing the ledger at {ledger.address} ({saved['operations']:,} earns)")
        else:
            console.print(f"putting {args.operations:,} earns on anvil in batches of {args.batch}...")
            ledger, generation = generate(console, chain, args)
            console.print(f"generated in {generation:.0f} s ({args.operations / generation:,.0f} earns/s)")
            if record is not None:
                record.write_text(
                    json.dumps(
                        {
                            "address": ledger.address,
                            "deployment_block": ledger.deployment_block,
                            "operations": args.operations,
                        }
                    )
                )
        report, phases = audit(console, chain.w3, ledger)
        metrics_phases = metrics_bench(console, chain.w3, ledger) if args.metrics else {}
    finally:
        if node is not None:
            node.close()
    assert report.ok, [str(d) for d in report.discrepancies[:5]]
    return {
        "operations": report.operations,
        "events": report.events,
        "members": report.members,
        "blocks": report.to_block - report.from_block + 1,
        "generation_seconds": round(generation) if generation else None,
        "audit_seconds": phases.pop("total"),
        **{f"{name.replace(' ', '_')}_seconds": seconds for name, seconds in phases.items()},
        "operations_per_s": round(report.operations / max(sum(phases.values()), 1e-9)),
        **metrics_phases,
    }


def metrics_bench(console: Console, w3: Web3, ledger: Ledger) -> dict[str, float]:
    """What `loyalty audit metrics` does for the whole history: read the events and their
    blocks' times, then replay them into the programme metrics."""
    start = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("metrics: reading events", total=None)

        def moved(stage: str, done: int, total: int) -> None:
            progress.update(task, description=f"metrics: {stage}", completed=done, total=total)

        history = load_history(w3, ledger, from_block=ledger.deployment_block, progress=moved)
    read = time.perf_counter() - start
    start = time.perf_counter()
    figures = metrics_of(history.events, history.times, period_from=0, period_to=history.to_timestamp + 1)
    computed = time.perf_counter() - start
    console.print(f"metrics: {figures.members_active:,} members active, redemption rate {figures.redemption_rate}")
    return {
        "metrics_reading_seconds": round(read, 1),
        "metrics_replay_seconds": round(computed, 1),
        "metrics_seconds": round(read + computed, 1),
    }


def replay_bench(console: Console, args: argparse.Namespace) -> dict[str, object]:
    console.print(f"building {args.operations:,} operations over {args.members:,} members...")
    events = stream(args.operations, args.members)
    replay = Replay()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("replaying", total=len(events))
        start = time.perf_counter()
        for i, (event, month) in enumerate(events):
            replay.apply(event, month)
            if i % 50_000 == 0:
                progress.update(task, completed=i)
        elapsed = time.perf_counter() - start
    assert not replay.discrepancies, replay.discrepancies[:3]
    figures: dict[str, object] = {
        "operations": replay.operations,
        "events": len(events),
        "seconds": round(elapsed, 2),
        "operations_per_s": round(replay.operations / elapsed),
    }
    if args.metrics:
        # The same stream dated: one block per event, in the middle of its month.
        dated = [LedgerEvent(e.name, e.args, i, "0x", 0) for i, (e, _) in enumerate(events)]
        times = {i: month_start(month) + 14 * 86_400 + i % 86_400 for i, (_, month) in enumerate(events)}
        start = time.perf_counter()
        metrics = metrics_of(dated, times, period_from=0, period_to=max(times.values()) + 1)
        figures["metrics_seconds"] = round(time.perf_counter() - start, 2)
        figures["metrics_members_active"] = metrics.members_active
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=None, help="default 500,000 (replay), 1,000,000 (--chain)")
    parser.add_argument("--members", type=int, default=None, help="default 20,000 (replay), 10,000 (--chain)")
    parser.add_argument("--chain", action="store_true", help="generate on anvil and time a chain-only audit")
    parser.add_argument("--partners", type=int, default=10)
    parser.add_argument("--batch", type=int, default=400, help="earns per transaction")
    parser.add_argument("--months", type=int, default=24, help="months the generated history spans")
    parser.add_argument("--workers", type=int, default=2, help="signing processes")
    parser.add_argument("--url", help="an anvil node to use instead of starting one")
    parser.add_argument("--record", help="JSON file: where the generated ledger is (written, or reused)")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--metrics", action="store_true", help="also time the programme metrics")
    args = parser.parse_args()
    console = Console()
    if args.chain:
        args.operations = args.operations or 1_000_000
        args.members = args.members or 10_000
        figures = chain_bench(console, args)
    else:
        args.operations = args.operations or 500_000
        args.members = args.members or 20_000
        figures = replay_bench(console, args)
    figures["machine"] = f"{platform.machine()} {os.cpu_count()} cores, CPython {platform.python_version()}"
    figures["date"] = datetime.now(UTC).date().isoformat()
    for k, v in figures.items():
        console.print(f"{k:>26}: {v}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)


if __name__ == "__main__":
    main()
