"""Random sequences of every state-changing call of the ledger, checked against the rules model.

One handler (rule) per entry point of the contract, operator functions included: the three
signed batches, `expire`, the ERC-20 `transfer` / `transferFrom` / `approve`, every operator
setting (expiry policy, tier table, partner rate and signer, allowance, suspension,
transfers switch, point value, pause) and the default-admin handover; plus the clock
(month skips up to years). Each handler also sends the refused variants of its call (a
stranger calling an operator function, a retired or wrong key, a replay, an out-of-range
value) and checks the contract refuses them as the model predicts.

After every step: each member's balance, expiry schedule, qualifying points and tier equal
the model's; the sum of balances is `totalSupply`, which is issued - redeemed - reversed -
expired; each partner's settings and totals (issued, reversed, redeemed, allowance) equal
the model's; so do the operator settings and ERC-20 allowances. No batch ever reverts while
the ledger is not paused: a valid operation is applied and an invalid one rejected alone.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from gateway.chain.backends import ChainBackend
from gateway.chain.ledger import BatchResult, EarnRecord, LedgerRevert, Sender, SignedEarn, SignedRedeem, rpc
from gateway.points.rules import MAX_ALLOWANCE, PartnerModel, PointsModel, Rejected, month_of
from partners.signing import Domain, address_of
from tests.support import TEST_COALITION, World, key_for, make_chain, member

MEMBERS = [member(f"sm-{i}") for i in range(4)]
STRANGER = member("sm-stranger")  # a funded account with no role: operator calls must refuse it
PARTNER_IDS = [1, 2, 3]  # registered at deployment; the machine may add 4 and 5
MAX_PARTNER_ID = 5
SMALL_ALLOWANCE = 2_000_000  # partner 3 (5 points per yen) runs out now and then
BATCH_GAS = 5_000_000  # far above any batch here: a batch that runs out is a failure, not noise
ALL = -1  # "the whole balance", resolved against the model when the step runs
MAX_UINT = 2**256 - 1

# Partner ids as drawn: mostly registered ones, sometimes one that may not exist (yet).
partner_ids = st.sampled_from([1, 1, 2, 2, 3, 3, 4, 5, 6])
rates = st.sampled_from([(1, 100), (3, 200), (5, 1), (1, 1), (7, 3), (2, 1000)])
members = st.integers(0, len(MEMBERS) - 1)
strangers = st.sampled_from([False, False, False, False, True])  # an operator call from a stranger


def running(machine: LedgerMachine) -> bool:
    """Most rules wait while the ledger is paused, so that a pause lasts a few steps, not half a run.
    The rules that stay enabled (batches, transfer, expire, unpause, time) check the pause."""
    return not machine.model.paused


# Months of history each member starts with: one earn per month, so member 0 holds six expiry
# buckets, member 1 four, member 2 two and member 3 none. The bucket ring's bugs (issue 10
# finding 1) need a member with several buckets; 50 random steps seldom build them alone.
HISTORY_MONTHS = [6, 4, 2, 0]


@dataclass
class Shared:
    world: World
    base: Any
    senders: list[Sender]
    stranger: Sender
    operators: list[Sender]
    partners: dict[int, dict[str, Any]]  # as registered, before the history
    history: list[tuple[SignedEarn, int, EarnRecord]]  # (earn, its month, its record) before the machine starts


_SHARED: dict[str, Shared] = {}


def shared(kind: str) -> Shared:
    if kind not in _SHARED:
        chain: ChainBackend = make_chain(kind)
        atexit.register(chain.close)  # shared by every example; stopped with the test process
        world = World.create(chain)
        world.ledger.call(world.admin, "setAllowance", 3, SMALL_ALLOWANCE)
        for _, address in [*MEMBERS, STRANGER]:
            chain.fund(address, 10**20)
        # Start mid-month: every block of an example then falls in the month the machine
        # tracks (a run takes seconds; the chain clock only jumps by `skip_months`).
        partners = {pid: world.ledger.partner(pid) for pid in PARTNER_IDS}
        history = []
        for age in range(max(HISTORY_MONTHS), 0, -1):
            world.goto_month(world.month() + 1)
            # Below every tier threshold: 10, 20, ... points (partner 1: 1 point per 100 minor units).
            ops = [
                world.earn_op(1, address, (i + 1) * 1_000 + age * 100)
                for i, (_, address) in enumerate(MEMBERS)
                if HISTORY_MONTHS[i] >= age
            ]
            result = world.earn(*ops)
            assert not result.rejections()
            history += [(op, result.earn_month, rec) for op, rec in zip(ops, result.earn_records(), strict=True)]
        world.goto_month(world.month() + 1)
        # Transfers start on (a rule switches them): off, most of a run would never move points.
        world.ledger.call(world.admin, "setTransfersEnabled", True)
        senders = [Sender(chain.w3, key) for key, _ in MEMBERS]
        operators = [world.admin, Sender(chain.w3, chain.dev_keys[2])]
        stranger = Sender(chain.w3, STRANGER[0])
        _SHARED[kind] = Shared(world, chain.snapshot(), senders, stranger, operators, partners, history)
    return _SHARED[kind]


class LedgerMachine(RuleBasedStateMachine):
    chain_kind = "anvil"

    @initialize()
    def setup(self) -> None:
        sh = shared(self.chain_kind)
        sh.world.chain.revert(sh.base)
        sh.base = sh.world.chain.snapshot()  # anvil consumes a snapshot when reverting to it
        self.world = sh.world
        for s in [*sh.senders, *sh.operators, sh.stranger, self.world.relayer]:
            s._nonce = None
        self.senders = sh.senders
        self.stranger = sh.stranger
        self.operators = sh.operators
        self.admin = 0  # index in self.operators of the default admin
        self.pending_admin: int | None = None
        self.model = PointsModel(
            tiers=[(t.threshold, t.multiplier_bps) for t in TEST_COALITION.tiers], transfers_enabled=True
        )
        # The machine's own copy of the partners' keys: rotation must not leak into the shared world.
        self.keys: dict[int, str] = {}
        self.retired_keys: dict[int, str] = {}
        for pid in PARTNER_IDS:
            p = sh.partners[pid]
            self.model.partners[pid] = PartnerModel(
                p["signer"], p["rate_points"], p["rate_per_minor_units"], p["currency"], p["allowance"]
            )
            self.keys[pid] = self.world.partner_keys[pid]
        for _, address in MEMBERS:
            self.model.member(address)
        self.point_value = (TEST_COALITION.point_value_minor_units, TEST_COALITION.point_value_currency)
        self.approvals: dict[tuple[int, int], int] = {}  # ERC-20 allowances (owner, spender) -> value
        self.earns: list[tuple[EarnRecord, int]] = []  # accepted earns, for reversals
        self.accepted_earns: list[SignedEarn] = []
        for op, month, record in sh.history:
            m = op.message
            points = self.model.earn(partner_id=1, member=m.member, spend=m.spend, nonce=m.nonce, month=month)
            assert points == record.points
            self.earns.append((record, points))
            self.accepted_earns.append(op)
        self.accepted_redeems: list[SignedRedeem] = []
        self.expired_events: dict[str, int] = {a.lower(): 0 for _, a in MEMBERS}
        self.key_versions = 0
        self.month = self.world.month()

    # ------------------------------------------------------------ helpers

    @property
    def operator(self) -> Sender:
        return self.operators[self.admin]

    def _send(self, sender: Sender, function: str, *args: Any, expect: str | None = None) -> list[Any]:
        """Sends one call; with `expect`, checks it reverts with that error. Returns its events."""
        if expect is None:
            receipt = self.world.ledger.call(sender, function, *args, gas=BATCH_GAS)
            events = self.world.ledger.decode_logs(receipt)
            self._count_expired(events)
            return events
        with pytest.raises(LedgerRevert, match=expect):
            self.world.ledger.call(sender, function, *args, gas=BATCH_GAS)
        sender._nonce = None  # a reverted transaction may or may not have used a nonce
        return []

    def _operator_call(self, stranger: bool, function: str, *args: Any, expect: str | None = None) -> bool:
        """An operator function, from the admin or (refused) from a stranger. True if applied."""
        if stranger:
            self._send(self.stranger, function, *args, expect="AccessControlUnauthorizedAccount")
            return False
        self._send(self.operator, function, *args, expect=expect)
        return expect is None

    def _count_expired(self, events: list[Any]) -> None:
        for e in events:
            if e.name == "Expired":
                self.expired_events[e.args["member"].lower()] += e.args["points"]

    def _submit(self, send: Callable[[], BatchResult]) -> BatchResult | None:
        """Runs a batch; while paused, checks the whole batch reverts and changes nothing."""
        if self.model.paused:
            with pytest.raises(LedgerRevert, match="EnforcedPause"):
                send()
            self.world.relayer._nonce = None
            return None
        result = send()  # raises if the batch reverted: no batch may, whatever its operations
        self._count_expired(result.events)
        return result

    def _expect(self, result: BatchResult, expected: list[str | None]) -> None:
        got: list[str | None] = [None] * len(expected)
        for index, error in result.rejections():
            got[index] = error.name
        assert got == expected

    def _fresh_reason(self, partner_id: int, amount_ok: bool) -> str:
        """What the contract says of a well-formed op with a fresh nonce and a bad signature."""
        partner = self.model.partners.get(partner_id)
        if partner is None:
            return "UnknownPartner"
        if not partner.active:
            return "PartnerSuspended"
        if not amount_ok:
            return "AmountOutOfRange"
        return "InvalidSignature"

    def _key(self, partner_id: int) -> str:
        return self.keys.get(partner_id) or key_for("nobody")

    def _balance(self, who: int) -> int:
        return self.model.balance(MEMBERS[who][1], self.month)

    # ------------------------------------------------------------ signed batches

    @rule(
        ops=st.lists(
            st.tuples(
                partner_ids,
                members,
                st.one_of(st.integers(1, 300_000), st.sampled_from([0, 1, 99, 2**64])),
                st.sampled_from(["ok", "ok", "ok", "ok", "replay", "wrong_key", "old_key", "foreign_chain"]),
            ),
            min_size=1,
            max_size=3,
        )
    )
    def earn_batch(self, ops: list[tuple[int, int, int, str]]) -> None:
        w = self.world
        signed: list[tuple[SignedEarn, str]] = []
        for partner, who, spend, variant in ops:
            address = MEMBERS[who][1]
            if variant == "replay" and self.accepted_earns:
                op = self.accepted_earns[-1]
            elif variant == "wrong_key":
                op = w.earn_op(partner, address, spend, key=key_for("impostor"))
            elif variant == "old_key" and partner in self.retired_keys:
                op = w.earn_op(partner, address, spend, key=self.retired_keys[partner])
            elif variant == "foreign_chain":
                d = w.ledger.domain
                foreign = Domain(d.chain_id + 7, d.contract)
                op = w.earn_op(partner, address, spend, key=self._key(partner), domain=foreign)
            else:
                variant = "ok" if variant != "replay" else variant
                op = w.earn_op(partner, address, spend, key=self._key(partner))
            signed.append((op, variant))
        result = self._submit(lambda: w.ledger.earn_batch(w.relayer, [op for op, _ in signed], gas=BATCH_GAS))
        if result is None:
            return
        assert result.earn_month == self.month
        expected: list[str | None] = []
        issued: list[int] = []
        for op, variant in signed:
            m = op.message
            if variant in ("wrong_key", "old_key", "foreign_chain"):
                expected.append(self._fresh_reason(m.partner_id, 0 < m.spend < 2**64))
                continue
            try:
                points = self.model.earn(
                    partner_id=m.partner_id, member=m.member, spend=m.spend, nonce=m.nonce, month=self.month
                )
            except Rejected as rejected:
                expected.append(rejected.reason)
                continue
            expected.append(None)
            issued.append(points)
            self.accepted_earns.append(op)
        self._expect(result, expected)
        assert [e.args["points"] for e in result.named("Earned")] == issued
        self.earns += zip(result.earn_records(), issued, strict=True)

    @rule(
        ops=st.lists(
            st.tuples(
                members,
                partner_ids,
                st.one_of(st.integers(1, 3_000), st.just(0), st.just(ALL)),
                st.sampled_from(["ok", "ok", "ok", "replay", "wrong_key"]),
            ),
            min_size=1,
            max_size=3,
        )
    )
    def redeem_batch(self, ops: list[tuple[int, int, int, str]]) -> None:
        w = self.world
        signed: list[tuple[SignedRedeem, str]] = []
        for who, partner, points, variant in ops:
            key = MEMBERS[who][0]
            points = max(1, self._balance(who)) if points == ALL else points
            if variant == "replay" and self.accepted_redeems:
                op = self.accepted_redeems[-1]
            elif variant == "wrong_key":
                op = w.redeem_op(key, partner, points, key=key_for("thief"))
            else:
                variant = "ok" if variant != "replay" else variant
                op = w.redeem_op(key, partner, points)
            signed.append((op, variant))
        result = self._submit(lambda: w.ledger.redeem_batch(w.relayer, [op for op, _ in signed], gas=BATCH_GAS))
        if result is None:
            return
        expected: list[str | None] = []
        for op, variant in signed:
            m = op.message
            if variant == "wrong_key":
                expected.append(self._fresh_reason(m.partner_id, m.points > 0))
                continue
            try:
                self.model.redeem(
                    partner_id=m.partner_id, member=m.member, points=m.points, nonce=m.nonce, month=self.month
                )
            except Rejected as rejected:
                expected.append(rejected.reason)
                continue
            expected.append(None)
            self.accepted_redeems.append(op)
        self._expect(result, expected)

    @precondition(lambda self: bool(self.earns))
    @rule(
        data=st.data(),
        count=st.integers(1, 2),
        variant=st.sampled_from(["ok", "ok", "ok", "other_partner", "old_key"]),
    )
    def reverse_batch(self, data: st.DataObject, count: int, variant: str) -> None:
        w = self.world
        planned = []
        for _ in range(count):
            record, earn_points = data.draw(st.sampled_from(self.earns))
            points = data.draw(st.integers(1, earn_points + 1))
            pid = record.partner_id
            if variant == "other_partner":
                other = data.draw(st.sampled_from([p for p in range(1, MAX_PARTNER_ID + 1) if p != pid]))
                op = w.reverse_op(record, points, partner_id=other, key=self._key(other))
            elif variant == "old_key" and pid in self.retired_keys:
                op = w.reverse_op(record, points, key=self.retired_keys[pid])
            else:
                op = w.reverse_op(record, points, key=self._key(pid))
            planned.append((op, record, earn_points, points))
        result = self._submit(lambda: w.ledger.reverse_batch(w.relayer, [p[0] for p in planned], gas=BATCH_GAS))
        if result is None:
            return
        expected: list[str | None] = []
        for op, record, earn_points, points in planned:
            m = op.message
            if m.partner_id != record.partner_id:
                expected.append(self._fresh_reason(m.partner_id, True).replace("InvalidSignature", "UnknownEarn"))
                continue
            if variant == "old_key" and record.partner_id in self.retired_keys:
                expected.append(self._fresh_reason(m.partner_id, True))
                continue
            try:
                self.model.reverse(
                    partner_id=record.partner_id,
                    leaf=record.leaf(),
                    member=record.member,
                    earn_points=earn_points,
                    earn_month=record.earn_month,
                    points=points,
                    nonce=m.nonce,
                    month=self.month,
                )
            except Rejected as rejected:
                expected.append(rejected.reason)
                continue
            expected.append(None)
        self._expect(result, expected)

    @rule(swept=st.lists(members, max_size=len(MEMBERS)), stranger=strangers)
    def expire(self, swept: list[int], stranger: bool) -> None:
        """The public sweep: anyone may call it, for any addresses (a non-member included)."""
        addresses = [MEMBERS[i][1] for i in swept] + ([STRANGER[1]] if stranger else [])
        result = self._submit(lambda: self.world.ledger.expire(self.world.relayer, addresses))
        if result is None:
            return
        for i in swept:
            address = MEMBERS[i][1]
            expired = sum(p for e, p in self.model.member(address).buckets.items() if e < self.month)
            assert self.expired_events[address.lower()] == expired, f"Expired events of member {i}"

    # ------------------------------------------------------------ ERC-20

    def _transfer_error(self, sender: int, points: int) -> str | None:
        if self.model.paused:
            return "EnforcedPause"
        if not self.model.transfers_enabled:
            return "TransfersDisabled"
        if self._balance(sender) < points:
            return "ERC20InsufficientBalance"
        return None

    @rule(sender=members, recipient=members, points=st.one_of(st.integers(0, 2_000), st.just(ALL)))
    def transfer(self, sender: int, recipient: int, points: int) -> None:
        """Transfers on and off, self-transfers included: they move points with their expiry."""
        points = self._balance(sender) if points == ALL else points
        to = MEMBERS[recipient][1]
        expected = self._transfer_error(sender, points)
        self._send(self.senders[sender], "transfer", to, points, expect=expected)
        if expected is None:
            self.model.transfer(sender=MEMBERS[sender][1], recipient=to, points=points, month=self.month)

    @precondition(running)
    @rule(
        spender=members,
        owner=members,
        recipient=members,
        points=st.one_of(st.integers(0, 2_000), st.just(ALL)),
    )
    def transfer_from(self, spender: int, owner: int, recipient: int, points: int) -> None:
        points = self._balance(owner) if points == ALL else points
        approved = self.approvals.get((owner, spender), 0)
        expected = "ERC20InsufficientAllowance" if approved < points else self._transfer_error(owner, points)
        to = MEMBERS[recipient][1]
        self._send(self.senders[spender], "transferFrom", MEMBERS[owner][1], to, points, expect=expected)
        if expected is None:
            if approved != MAX_UINT:
                self.approvals[(owner, spender)] = approved - points
            self.model.transfer(sender=MEMBERS[owner][1], recipient=to, points=points, month=self.month)

    @precondition(running)
    @rule(owner=members, spender=members, value=st.one_of(st.integers(0, 5_000), st.just(MAX_UINT)))
    def approve(self, owner: int, spender: int, value: int) -> None:
        self._send(self.senders[owner], "approve", MEMBERS[spender][1], value)
        self.approvals[(owner, spender)] = value

    # ------------------------------------------------------------ operator

    @precondition(running)
    @rule(
        months=st.one_of(
            st.integers(0, 14),
            st.integers(0, 14),
            st.sampled_from([0, 12, 24, 120]),
            st.integers(0, 120),
            st.integers(121, 2**16 - 1),
        ),
        stranger=strangers,
    )
    def set_expiry_months(self, months: int, stranger: bool) -> None:
        """Lengthening, shortening (the path of issue 10 finding 1 b), 0 = never, refused > 120."""
        bad = "InvalidExpiryMonths" if months > 120 else None
        if self._operator_call(stranger, "setExpiryMonths", months, expect=bad):
            self.model.expiry_months = months

    @precondition(running)
    @rule(
        rows=st.lists(
            st.tuples(st.integers(1, 5_000), st.sampled_from([1, 5_000, 10_000, 12_500, 20_000, 1_000_000])),
            max_size=4,
        ),
        defect=st.sampled_from([None, None, None, "first_not_zero", "not_ascending", "zero_multiplier", "too_many"]),
        stranger=strangers,
    )
    def set_tiers(self, rows: list[tuple[int, int]], defect: str | None, stranger: bool) -> None:
        thresholds = sorted({t for t, _ in rows})
        table = [(0, 10_000)] + [(t, m) for t, (_, m) in zip(thresholds, rows, strict=False)]
        if defect == "first_not_zero":
            table[0] = (1, table[0][1])
        elif defect == "not_ascending" and len(table) > 1:
            table[-1] = (table[-2][0], table[-1][1])
        elif defect == "zero_multiplier":
            table[-1] = (table[-1][0], 0)
        elif defect == "too_many":
            table = [(i * 10, 10_000) for i in range(9)]
        else:
            defect = None  # "not_ascending" needs two rows
        if self._operator_call(stranger, "setTiers", table, expect="InvalidTierTable" if defect else None):
            self.model.tiers = table

    @precondition(running)
    @rule(
        partner=partner_ids,
        rotate=st.booleans(),
        rate=st.one_of(rates, st.just((0, 1)), st.just((1, 0))),
        stranger=strangers,
    )
    def update_partner(self, partner: int, rotate: bool, rate: tuple[int, int], stranger: bool) -> None:
        """Rate changes and signer rotation; the retired key must stop working at once."""
        p = self.model.partners.get(partner)
        self.key_versions += 1
        key = key_for(f"sm-partner-{partner}-v{self.key_versions}") if rotate else self._key(partner)
        expected = "UnknownPartner" if p is None else ("InvalidRate" if 0 in rate else None)
        if self._operator_call(stranger, "updatePartner", partner, address_of(key), *rate, expect=expected):
            assert p is not None
            if rotate:
                self.retired_keys[partner] = self.keys[partner]
                self.keys[partner] = key
            p.signer, (p.rate_points, p.rate_per_minor_units) = address_of(key), rate

    @precondition(running)
    @rule(
        partner=partner_ids,
        allowance=st.one_of(st.integers(0, 10**6), st.just(10**12), st.just(MAX_ALLOWANCE)),
        stranger=strangers,
    )
    def set_allowance(self, partner: int, allowance: int, stranger: bool) -> None:
        expected = None if partner in self.model.partners else "UnknownPartner"
        if self._operator_call(stranger, "setAllowance", partner, allowance, expect=expected):
            self.model.partners[partner].allowance = allowance

    @precondition(running)
    @rule(partner=partner_ids, active=st.booleans(), stranger=strangers)
    def set_partner_active(self, partner: int, active: bool, stranger: bool) -> None:
        expected = None if partner in self.model.partners else "UnknownPartner"
        if self._operator_call(stranger, "setPartnerActive", partner, active, expect=expected):
            self.model.partners[partner].active = active

    @precondition(lambda self: len(self.model.partners) < MAX_PARTNER_ID)
    @precondition(running)
    @rule(rate=rates, allowance=st.integers(0, 10**7), stranger=strangers)
    def add_partner(self, rate: tuple[int, int], allowance: int, stranger: bool) -> None:
        pid = len(self.model.partners) + 1
        key = key_for(f"sm-partner-{pid}")
        args = (address_of(key), *rate, b"CHF", allowance)
        if self._operator_call(stranger, "addPartner", *args):
            self.model.partners[pid] = PartnerModel(address_of(key), *rate, "CHF", allowance)
            self.keys[pid] = key

    @precondition(running)
    @rule(enabled=st.booleans(), stranger=strangers)  # on in the base state: see HISTORY_MONTHS
    def set_transfers_enabled(self, enabled: bool, stranger: bool) -> None:
        if self._operator_call(stranger, "setTransfersEnabled", enabled):
            self.model.transfers_enabled = enabled

    @precondition(running)
    @rule(value=st.integers(0, 10**6), currency=st.sampled_from(["EUR", "GBP"]), stranger=strangers)
    def set_point_value(self, value: int, currency: str, stranger: bool) -> None:
        if self._operator_call(stranger, "setPointValue", value, currency.encode()):
            self.point_value = (value, currency)

    @precondition(running)
    @rule(stranger=st.sampled_from([False, True, True]))  # a real pause one call in three
    def pause(self, stranger: bool) -> None:
        if self._operator_call(stranger, "pause"):
            self.model.paused = True

    @rule(stranger=strangers)
    def unpause(self, stranger: bool) -> None:
        if self._operator_call(stranger, "unpause", expect=None if self.model.paused else "ExpectedPause"):
            self.model.paused = False

    @precondition(running)
    @rule(stranger=strangers)
    def begin_default_admin_transfer(self, stranger: bool) -> None:
        """The operator hands the ledger to the other operator key (3 days' delay)."""
        other = 1 - self.admin
        if self._operator_call(stranger, "beginDefaultAdminTransfer", self.operators[other].address):
            self.pending_admin = other

    @precondition(running)
    @rule(stranger=strangers)
    def cancel_default_admin_transfer(self, stranger: bool) -> None:
        if self._operator_call(stranger, "cancelDefaultAdminTransfer"):
            self.pending_admin = None

    @precondition(running)
    @rule(pending=st.sampled_from([True, True, False]))
    def accept_default_admin_transfer(self, pending: bool) -> None:
        by = self.pending_admin if pending and self.pending_admin is not None else 1 - self.admin
        expected = None
        if by != self.pending_admin:
            expected = "AccessControlInvalidDefaultAdmin"
        else:
            _, schedule = self.world.ledger.view("pendingDefaultAdmin")
            if self.world.chain.latest_timestamp() + 1 <= schedule:
                expected = "AccessControlEnforcedDefaultAdminDelay"
        self._send(self.operators[by], "acceptDefaultAdminTransfer", expect=expected)
        if expected is None:
            self.admin, self.pending_admin = by, None

    # ------------------------------------------------------------ time

    @rule(months=st.one_of(st.just(1), st.sampled_from([1, 2, 3, 11, 12, 13]), st.integers(1, 14), st.integers(1, 72)))
    def skip_months(self, months: int) -> None:
        self.month += months
        self.world.goto_month(self.month)

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
        partners = list(range(1, MAX_PARTNER_ID + 1))
        calls += [("totalSupply", ()), ("partnerCount", ())] + [("partner", (pid,)) for pid in partners]
        settings_calls: list[tuple[str, tuple[Any, ...]]] = [
            ("tiers", ()),
            ("expiryMonths", ()),
            ("transfersEnabled", ()),
            ("paused", ()),
            ("pointValue", ()),
            ("defaultAdmin", ()),
            ("pendingDefaultAdmin", ()),
        ]
        approvals = sorted(self.approvals)
        leaves = sorted(self.model.reversed_of)
        calls += settings_calls
        calls += [("allowance", (MEMBERS[o][1], MEMBERS[s][1])) for o, s in approvals]
        calls += [("reversedOf", (leaf,)) for leaf in leaves]
        values = iter(w.ledger.views(calls, block))

        balances = 0
        for i, (_, address) in enumerate(MEMBERS):
            balance, qualifying, tier, (months, points) = (next(values) for _ in range(4))
            assert balance == self.model.balance(address, month), f"balance of member {i}"
            assert qualifying == self.model.qualifying(address, month), f"qualifying points of member {i}"
            assert tier == self.model.tier_index(address, month), f"tier of member {i}"
            assert list(zip(months, points, strict=True)) == self.model.expiring(address, month), f"buckets of {i}"
            assert self.expired_events[address.lower()] <= sum(
                p for e, p in self.model.member(address).buckets.items() if e < month
            ), f"more Expired events than expired points for member {i}"
            balances += balance
        supply, count = next(values), next(values)
        assert supply == balances, "totalSupply is not the sum of balances"
        assert count == len(self.model.partners)
        issued = redeemed = reversed_ = 0
        for pid in partners:
            info = next(values)
            p = self.model.partners.get(pid)
            if p is None:
                assert _address(info[0]) is None, f"partner {pid} should not exist"
                continue
            assert (_address(info[0]), info[1], info[2], info[3]) == (
                to_checksum_address(p.signer),
                p.active,
                p.rate_points,
                p.rate_per_minor_units,
            ), f"settings of partner {pid}"
            assert (info[5], info[6], info[7], info[8]) == (p.allowance, p.issued, p.reversed, p.redeemed), (
                f"totals of partner {pid}"
            )
            issued, reversed_, redeemed = issued + info[6], reversed_ + info[7], redeemed + info[8]
        expired = self.model.expired(month)
        assert supply == issued - redeemed - reversed_ - expired, "supply is not issued - redeemed - reversed - expired"

        tiers, expiry_months, transfers, paused, (value, currency), admin, (pending, _) = (
            next(values) for _ in settings_calls
        )
        assert [tuple(t) for t in tiers] == [tuple(t) for t in self.model.tiers]
        assert expiry_months == self.model.expiry_months
        assert transfers == self.model.transfers_enabled
        assert paused == self.model.paused
        assert (value, bytes(currency).decode()) == self.point_value
        assert _address(admin) == self.operator.address
        expected_pending = self.operators[self.pending_admin].address if self.pending_admin is not None else None
        assert _address(pending) == expected_pending
        for owner, spender in approvals:
            assert next(values) == self.approvals[(owner, spender)], f"ERC-20 allowance {owner} -> {spender}"
        for leaf in leaves:
            assert next(values) == self.model.reversed_of[leaf]


def _address(value: Any) -> str | None:
    """A view's address as a checksummed string; None for the zero address."""
    raw = value if isinstance(value, bytes) else bytes.fromhex(str(value).removeprefix("0x"))
    return to_checksum_address(raw) if any(raw) else None


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
