"""Random sequences of operations on a real chain, checked against the plain-Python rules model.

After every step: each member's balance, qualifying points, tier and expiry schedule equal
the model's; the sum of balances is totalSupply; totalSupply is issued - redeemed - reversed
- expired; each partner's totals and allowance equal the model's. Replayed, forged and
foreign-chain signatures must be rejected with the reason the model predicts.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from gateway.chain.backends import ChainBackend
from gateway.chain.ledger import BatchResult, EarnRecord, LedgerRevert, Sender, SignedEarn, SignedRedeem, rpc
from gateway.ledger.rules import PartnerModel, PointsModel, Rejected, month_of
from partners.signing import Domain
from tests.support import TEST_COALITION, World, key_for, make_chain, member

MEMBERS = [member(f"sm-{i}") for i in range(4)]
PARTNER_IDS = [1, 2, 3]
SMALL_ALLOWANCE = 2_000_000  # partner 3 (5 points per yen) runs out now and then


@dataclass
class Shared:
    world: World
    base: Any
    senders: list[Sender]


_SHARED: dict[str, Shared] = {}


def shared(kind: str) -> Shared:
    if kind not in _SHARED:
        chain: ChainBackend = make_chain(kind)
        atexit.register(chain.close)  # shared by every example; stopped with the test process
        world = World.create(chain)
        world.ledger.call(world.admin, "setAllowance", 3, SMALL_ALLOWANCE)
        for _, address in MEMBERS:
            chain.fund(address, 10**20)
        # Start mid-month: every block of an example then falls in the month the machine
        # tracks (a run takes seconds; the chain clock only jumps by `skip_months`).
        world.goto_month(world.month() + 1)
        senders = [Sender(chain.w3, key) for key, _ in MEMBERS]
        _SHARED[kind] = Shared(world, chain.snapshot(), senders)
    return _SHARED[kind]


class LedgerMachine(RuleBasedStateMachine):
    chain_kind = "anvil"

    @initialize()
    def setup(self) -> None:
        sh = shared(self.chain_kind)
        sh.world.chain.revert(sh.base)
        sh.base = sh.world.chain.snapshot()  # anvil consumes a snapshot when reverting to it
        self.world = sh.world
        for s in [*sh.senders, self.world.admin, self.world.relayer]:
            s._nonce = None
        self.senders = sh.senders
        self.model = PointsModel(tiers=[(t.threshold, t.multiplier_bps) for t in TEST_COALITION.tiers])
        for pid in PARTNER_IDS:
            p = self.world.ledger.partner(pid)
            self.model.partners[pid] = PartnerModel(
                p["signer"], p["rate_points"], p["rate_per_minor_units"], p["currency"], p["allowance"]
            )
        for _, address in MEMBERS:
            self.model.member(address)
        self.earns: list[tuple[EarnRecord, int]] = []  # accepted earns, for reversals
        self.accepted_earns: list[SignedEarn] = []
        self.accepted_redeems: list[SignedRedeem] = []
        self.expired_events = 0
        self.month = self.world.month()

    # ------------------------------------------------------------ helpers

    def _admin(self, function: str, *args: Any) -> None:
        self.world.ledger.call(self.world.admin, function, *args, gas=300_000)

    def _submit(self, send: Callable[[], BatchResult]) -> BatchResult | None:
        """Runs a batch; while paused, checks the whole batch reverts and changes nothing."""
        if self.model.paused:
            with pytest.raises(LedgerRevert, match="EnforcedPause"):
                send()
            return None
        result = send()
        self.expired_events += sum(e.args["points"] for e in result.named("Expired"))
        return result

    def _expect(self, result: BatchResult, expected: list[str | None]) -> None:
        got: list[str | None] = [None] * len(expected)
        for index, error in result.rejections():
            got[index] = error.name
        assert got == expected

    def _fresh_reason(self, check_partner: int, amount_ok: bool) -> str:
        """What the contract says of a well-formed op with a fresh nonce and a bad signature."""
        partner = self.model.partners.get(check_partner)
        if partner is None:
            return "UnknownPartner"
        if not partner.active:
            return "PartnerSuspended"
        if not amount_ok:
            return "AmountOutOfRange"
        return "InvalidSignature"

    # ------------------------------------------------------------ rules

    @rule(
        partner=st.sampled_from(PARTNER_IDS),
        who=st.integers(0, len(MEMBERS) - 1),
        spend=st.one_of(st.integers(1, 300_000), st.sampled_from([0, 1, 99, 2**64])),
        variant=st.sampled_from(["ok", "ok", "ok", "replay", "wrong_key", "foreign_chain"]),
    )
    def earn(self, partner: int, who: int, spend: int, variant: str) -> None:
        address = MEMBERS[who][1]
        w = self.world
        if variant == "replay" and self.accepted_earns:
            op = self.accepted_earns[-1]
        elif variant == "wrong_key":
            op = w.earn_op(partner, address, spend, key=key_for("impostor"))
        elif variant == "foreign_chain":
            d = w.ledger.domain
            op = w.earn_op(partner, address, spend, domain=Domain(d.chain_id + 7, d.contract))
        else:
            variant = "ok"
            op = w.earn_op(partner, address, spend)
        result = self._submit(lambda: w.ledger.earn_batch(w.relayer, [op], gas=1_500_000))
        if result is None:
            return
        m = op.message
        if variant in ("wrong_key", "foreign_chain"):
            self._expect(result, [self._fresh_reason(m.partner_id, 0 < m.spend < 2**64)])
            return
        assert result.earn_month == self.month
        month = self.month
        try:
            points = self.model.earn(
                partner_id=m.partner_id, member=m.member, spend=m.spend, nonce=m.nonce, month=month
            )
        except Rejected as rejected:
            self._expect(result, [rejected.reason])
            return
        self._expect(result, [None])
        assert result.named("Earned")[0].args["points"] == points
        self.accepted_earns.append(op)
        self.earns.append((result.earn_records()[0], points))

    @rule(
        who=st.integers(0, len(MEMBERS) - 1),
        partner=st.sampled_from(PARTNER_IDS),
        points=st.integers(1, 3_000),
        variant=st.sampled_from(["ok", "ok", "ok", "replay", "wrong_key"]),
    )
    def redeem(self, who: int, partner: int, points: int, variant: str) -> None:
        key, address = MEMBERS[who]
        w = self.world
        if variant == "replay" and self.accepted_redeems:
            op = self.accepted_redeems[-1]
        elif variant == "wrong_key":
            op = w.redeem_op(key, partner, points, key=key_for("thief"))
        else:
            variant = "ok"
            op = w.redeem_op(key, partner, points)
        result = self._submit(lambda: w.ledger.redeem_batch(w.relayer, [op], gas=1_500_000))
        if result is None:
            return
        m = op.message
        if variant == "wrong_key":
            self._expect(result, [self._fresh_reason(m.partner_id, True)])
            return
        try:
            self.model.redeem(
                partner_id=m.partner_id, member=m.member, points=m.points, nonce=m.nonce, month=self.month
            )
        except Rejected as rejected:
            self._expect(result, [rejected.reason])
            return
        self._expect(result, [None])
        self.accepted_redeems.append(op)

    @precondition(lambda self: bool(self.earns))
    @rule(data=st.data(), variant=st.sampled_from(["ok", "ok", "other_partner"]))
    def reverse(self, data: st.DataObject, variant: str) -> None:
        record, earn_points = data.draw(st.sampled_from(self.earns))
        points = data.draw(st.integers(1, max(1, earn_points)))
        w = self.world
        if variant == "other_partner":
            other = next(p for p in PARTNER_IDS if p != record.partner_id)
            op = w.reverse_op(record, points, partner_id=other)
        else:
            op = w.reverse_op(record, points)
        result = self._submit(lambda: w.ledger.reverse_batch(w.relayer, [op], gas=1_500_000))
        if result is None:
            return
        if variant == "other_partner":
            self._expect(
                result, [self._fresh_reason(op.message.partner_id, True).replace("InvalidSignature", "UnknownEarn")]
            )
            return
        try:
            self.model.reverse(
                partner_id=record.partner_id,
                leaf=record.leaf(),
                member=record.member,
                earn_points=earn_points,
                earn_month=record.earn_month,
                points=points,
                nonce=op.message.nonce,
                month=self.month,
            )
        except Rejected as rejected:
            self._expect(result, [rejected.reason])
            return
        self._expect(result, [None])

    @rule(
        sender=st.integers(0, len(MEMBERS) - 1),
        recipient=st.integers(0, len(MEMBERS) - 1),
        points=st.integers(1, 2_000),
    )
    def transfer(self, sender: int, recipient: int, points: int) -> None:
        w = self.world
        to = MEMBERS[recipient][1]
        month = self.month
        expected: str | None = None
        if self.model.paused:
            expected = "EnforcedPause"
        elif not self.model.transfers_enabled:
            expected = "TransfersDisabled"
        elif self.model.balance(MEMBERS[sender][1], month) < points:
            expected = "ERC20InsufficientBalance"
        if expected:
            with pytest.raises(LedgerRevert, match=expected):
                w.ledger.call(self.senders[sender], "transfer", to, points, gas=1_000_000)
            self.senders[sender]._nonce = None  # the reverted transaction used a nonce
            return
        receipt = w.ledger.call(self.senders[sender], "transfer", to, points, gas=1_000_000)
        events = w.ledger.decode_logs(receipt)
        self.expired_events += sum(e.args["points"] for e in events if e.name == "Expired")
        self.model.transfer(sender=MEMBERS[sender][1], recipient=to, points=points, month=self.month)

    @rule()
    def toggle_transfers(self) -> None:
        self.model.transfers_enabled = not self.model.transfers_enabled
        self._admin("setTransfersEnabled", self.model.transfers_enabled)

    @rule()
    def toggle_pause(self) -> None:
        self._admin("unpause" if self.model.paused else "pause")
        self.model.paused = not self.model.paused

    @rule(partner=st.sampled_from(PARTNER_IDS))
    def toggle_partner(self, partner: int) -> None:
        p = self.model.partners[partner]
        p.active = not p.active
        self._admin("setPartnerActive", partner, p.active)

    @rule(months=st.integers(1, 14))
    def skip_months(self, months: int) -> None:
        self.month += months
        self.world.goto_month(self.month)

    @rule()
    def sweep(self) -> None:
        result = self._submit(lambda: self.world.ledger.expire(self.world.relayer, [a for _, a in MEMBERS]))
        if result is None:
            return
        assert self.expired_events == self.model.expired(self.month)

    # ------------------------------------------------------------ invariants

    @invariant()
    def chain_agrees_with_model(self) -> None:
        if not hasattr(self, "model"):
            return
        w = self.world
        latest = rpc(w.chain.w3, "eth_getBlockByNumber", ["latest", False])
        block, timestamp = (
            int(latest[k], 16) if isinstance(latest[k], str) else int(latest[k]) for k in ("number", "timestamp")
        )
        month = self.month
        assert month_of(timestamp) == month, "the chain clock left the month the machine tracks"
        calls: list[tuple[str, tuple[Any, ...]]] = []
        for _, address in MEMBERS:
            calls += [
                ("balanceOf", (address,)),
                ("qualifyingPoints", (address,)),
                ("tierOf", (address,)),
                ("expiringOf", (address,)),
            ]
        calls += [("totalSupply", ())] + [("partner", (pid,)) for pid in PARTNER_IDS]
        values = w.ledger.views(calls, block)
        balances = 0
        for i, (_, address) in enumerate(MEMBERS):
            balance, qualifying, tier, (months, points) = values[4 * i : 4 * i + 4]
            assert balance == self.model.balance(address, month), f"balance of member {i}"
            assert qualifying == self.model.qualifying(address, month), f"qualifying points of member {i}"
            assert tier == self.model.tier_index(address, month), f"tier of member {i}"
            assert list(zip(months, points, strict=True)) == self.model.expiring(address, month)
            balances += balance
        supply = values[4 * len(MEMBERS)]
        assert supply == balances
        issued = redeemed = reversed_ = 0
        for pid, info in zip(PARTNER_IDS, values[4 * len(MEMBERS) + 1 :], strict=True):
            p = self.model.partners[pid]
            assert (info[5], info[6], info[7], info[8]) == (p.allowance, p.issued, p.reversed, p.redeemed)
            issued, reversed_, redeemed = issued + info[6], reversed_ + info[7], redeemed + info[8]
        assert supply == issued - redeemed - reversed_ - self.model.expired(month)


EXAMPLES = int(os.environ.get("LEDGER_SM_EXAMPLES", "200"))
STEPS = int(os.environ.get("LEDGER_SM_STEPS", "50"))

LedgerMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.slow
@pytest.mark.anvil
class TestLedgerStateMachineOnAnvil(LedgerMachine.TestCase):  # type: ignore[name-defined]
    pass
