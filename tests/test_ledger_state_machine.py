"""Random sequences of every state-changing call of the ledger, checked against the rules model.

One handler (rule) per entry point of the three contracts of revision 2, operator functions
included: the five signed batches (earn with its signed `maxPoints`, award with its reason,
redemption, reversal of earns and awards, refund of redemptions), `expire`, the ERC-20 `transfer` / `transferFrom`
/ `approve`, member migration, signer rotation with the partner's key, every scheduled change
(expiry policy, tier table, partner rate and prices, point value, the operator's signer
request) with `applyChange` before and after its notice period, `cancelChange` and the
partner's `cancelSignerChange`, the immediate operator calls (allowance, suspension,
transfers switch, assigned tiers, pause, adding a partner that waits out the notice) and the
default-admin handover; plus the clock (days, and month skips up to years). Each handler also
sends the refused variants of its call (a stranger calling an operator function, a retired
or wrong key, a replay, an out-of-range value, a change applied early) and checks the
contract refuses them as the model predicts.

After every step: each member's balance, expiry schedule, qualifying points, tier and
assigned tier equal the model's; the sum of balances is `totalSupply`, which is issued -
redeemed + refunded - reversed - expired; each partner's settings, prices and totals (issued,
awarded, reversed, redeemed, refunded, allowance, first issuing second) and each redemption's
refunded points equal the model's; so do every scheduled
change's state, the operator settings and ERC-20 allowances. No batch ever reverts while the
ledger is not paused: a valid operation is applied and an invalid one rejected alone.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from eth_utils import keccak, to_checksum_address
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from gateway.chain.backends import ChainBackend
from gateway.chain.campaigns import create_campaign
from gateway.chain.ledger import (
    BatchResult,
    EarnRecord,
    LedgerRevert,
    RedemptionRecord,
    Sender,
    SignedAward,
    SignedEarn,
    SignedRedeem,
    SignedRefund,
    rpc,
)
from gateway.points.rules import (
    CHANGE_DEBT_POLICY,
    CHANGE_EXPIRY,
    CHANGE_POINT_VALUE,
    CHANGE_PRICES,
    CHANGE_RATE,
    CHANGE_SIGNER,
    CHANGE_TIERS,
    MAX_ALLOWANCE,
    MAX_OP_POINTS,
    NEVER,
    CampaignModel,
    PartnerModel,
    PointsModel,
    Rejected,
    month_of,
    month_start,
)
from partners.signing import (
    AwardMessage,
    CampaignMessage,
    CancelChangeMessage,
    Domain,
    MigrateMessage,
    RotateSignerMessage,
    address_of,
    sign,
)
from tests.support import DAY, FAR_DEADLINE, TEST_COALITION, World, key_for, make_chain, member

MEMBERS = [member(f"sm-{i}") for i in range(4)]
STRANGER = member("sm-stranger")  # a funded account with no role: operator calls must refuse it
PARTNER_IDS = [1, 2, 3]  # registered at deployment; the machine may add 4 and 5
MAX_PARTNER_ID = 5
SMALL_ALLOWANCE = 2_000_000  # partner 3 (5 points per yen) runs out now and then
BATCH_GAS = 5_000_000  # far above any batch here: a batch that runs out is a failure, not noise
ALL = -1  # "the whole balance", resolved against the model when the step runs
MAX_UINT = 2**256 - 1
NOTICE = 3 * DAY  # the ledger's notice period (development chains allow less than 7 days)
MAX_TIERS = 8
STATES = {1: "pending", 2: "applied", 3: "cancelled"}

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
    stranger: Sender
    operators: list[Sender]
    partners: dict[int, dict[str, Any]]  # as registered, before the history
    history: list[tuple[SignedEarn, int, EarnRecord]]  # (earn, its month, its record) before the machine starts


_SHARED: dict[str, Shared] = {}


def shared(kind: str) -> Shared:
    if kind not in _SHARED:
        chain: ChainBackend = make_chain(kind)
        atexit.register(chain.close)  # shared by every example; stopped with the test process
        world = World.create(chain, notice_period=NOTICE)
        world.ledger.call(world.admin, "setAllowance", 3, SMALL_ALLOWANCE)
        for _, address in [*MEMBERS, STRANGER]:
            chain.fund(address, 10**20)
        partners = {pid: world.ledger.partner(pid) for pid in PARTNER_IDS}
        history = []
        for age in range(max(HISTORY_MONTHS), 0, -1):
            # A month later: the partners added at deployment have waited out the notice.
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
        # Start at the 1st of a month: every block of an example then falls in the month the
        # machine tracks (a run takes seconds; the clock only jumps by `wait` and `skip_months`).
        world.goto_month(world.month() + 1, day=1)
        # Transfers start on (a rule switches them): off, most of a run would never move points.
        world.ledger.call(world.admin, "setTransfersEnabled", True)
        # (r2) So does the debt policy (a rule switches it, under notice): off, a run would
        # seldom reach a reversal that records debt, nor the later issuance that repays it.
        change = world.ledger.schedule(world.admin, "setDebtPolicy", True)
        world.chain.travel_to(world.chain.latest_timestamp() + NOTICE + 1)
        world.ledger.apply_change(world.admin, change)
        operators = [world.admin, Sender(chain.w3, chain.dev_keys[2])]
        stranger = Sender(chain.w3, STRANGER[0])
        _SHARED[kind] = Shared(world, chain.snapshot(), stranger, operators, partners, history)
    return _SHARED[kind]


@dataclass
class Issue:
    """An accepted earn or award, for reversals: its record, points, expiry month and whether
    it counted as qualifying points (awards do not)."""

    record: EarnRecord
    points: int
    expiry: int
    qualifying: bool


@dataclass
class Redemption:
    """An accepted redemption, for refunds (r2): its record (with the latest expiry month it
    burnt, which the model computed too) and the member that signed it."""

    record: RedemptionRecord
    member: str


class LedgerMachine(RuleBasedStateMachine):
    chain_kind = "anvil"

    @initialize()
    def setup(self) -> None:
        sh = shared(self.chain_kind)
        sh.world.chain.revert(sh.base)
        sh.base = sh.world.chain.snapshot()  # anvil consumes a snapshot when reverting to it
        self.world = sh.world
        # The machine's own members: migration replaces one with a fresh address of its own.
        self.people: list[tuple[str, str]] = list(MEMBERS)
        self.senders = [Sender(self.world.chain.w3, key) for key, _ in MEMBERS]
        self.migrated: list[tuple[str, str]] = []  # (key, address) members left: they must hold nothing
        self.stranger = sh.stranger
        self.operators = sh.operators
        for s in [*self.operators, self.stranger, self.world.relayer]:
            s._nonce = None
        self.admin = 0  # index in self.operators of the default admin
        self.pending_admin: int | None = None
        self.model = PointsModel(
            tiers=[(t.threshold, t.multiplier_bps) for t in TEST_COALITION.tiers],
            transfers_enabled=True,
            debt_allowed=True,
        )
        self.model.notice_period = NOTICE
        # The changes the deployment scheduled (applied at once: no partner existed yet).
        self.model.changes = {}
        self.first_change = int(self.world.ledger.view("changeCount")) + 1
        # The machine's own copy of the partners' keys: rotation must not leak into the shared world.
        self.keys: dict[int, str] = {}
        self.retired_keys: dict[int, str] = {}
        for pid in PARTNER_IDS:
            p = sh.partners[pid]
            self.model.partners[pid] = PartnerModel(
                p["signer"],
                p["rate_points"],
                p["rate_per_minor_units"],
                p["currency"],
                p["allowance"],
                active_from=p["active_from"],
            )
            self.keys[pid] = self.world.partner_keys[pid]
        for _, address in MEMBERS:
            self.model.member(address)
        self.point_value = (TEST_COALITION.point_value_minor_units, TEST_COALITION.point_value_currency)
        self.approvals: dict[tuple[int, int], int] = {}  # ERC-20 allowances (owner, spender) -> value
        self.issues: list[Issue] = []  # accepted earns and awards, for reversals
        self.accepted_earns: list[SignedEarn] = []
        self.accepted_awards: list[SignedAward] = []
        expiry = self.model.expiry_months
        for op, month, record in sh.history:
            m = op.message
            points = self.model.earn(partner_id=1, member=m.member, spend=m.spend, nonce=m.nonce, month=month)
            assert points == record.points
            self.issues.append(Issue(record, points, month + expiry, True))
            self.accepted_earns.append(op)
        self.accepted_redeems: list[SignedRedeem] = []
        self.redemptions: list[Redemption] = []  # accepted redemptions, for refunds (r2)
        self.accepted_refunds: list[tuple[SignedRefund, Redemption]] = []
        self.used_rotations: list[tuple[RotateSignerMessage, Any]] = []
        self.signer_keys: dict[int, str] = {}  # change id -> key of a requested signer
        self.expired_events: dict[str, int] = {a.lower(): 0 for _, a in MEMBERS}
        self.key_versions = 0
        self.month = self.world.month()
        self.last_campaign: tuple[CampaignMessage, str] | None = None

    # ------------------------------------------------------------ helpers

    @property
    def operator(self) -> Sender:
        return self.operators[self.admin]

    def _now(self) -> int:
        return self.world.chain.latest_timestamp()

    def _block_time(self, receipt: Any) -> int:
        return int(self.world.chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"])

    def _send(self, sender: Sender, function: str, *args: Any, expect: str | None = None) -> Any:
        """Sends one call; with `expect`, checks it reverts with that error. Returns its receipt."""
        event(f"{function}: {expect or 'applied'}")  # --hypothesis-show-statistics lists what ran
        if expect is None:
            receipt = self.world.ledger.call(sender, function, *args, gas=BATCH_GAS)
            self._count_expired(self.world.ledger.decode_logs(receipt))
            return receipt
        with pytest.raises(LedgerRevert, match=expect):
            self.world.ledger.call(sender, function, *args, gas=BATCH_GAS)
        sender._nonce = None  # a reverted transaction may or may not have used a nonce
        return None

    def _operator_call(self, stranger: bool, function: str, *args: Any, expect: str | None = None) -> Any:
        """An operator function, from the admin or (refused) from a stranger. Its receipt if applied."""
        if stranger:
            self._send(self.stranger, function, *args, expect="AccessControlUnauthorizedAccount")
            return None
        return self._send(self.operator, function, *args, expect=expect)

    def _count_expired(self, events: list[Any]) -> None:
        for e in events:
            if e.name == "Expired":
                key = e.args["member"].lower()
                self.expired_events[key] = self.expired_events.get(key, 0) + e.args["points"]

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

    def _expect(self, result: BatchResult, expected: list[str | None], kind: str) -> None:
        for reason in expected:
            event(f"{kind}: {reason or 'applied'}")
        got: list[str | None] = [None] * len(expected)
        for index, error in result.rejections():
            got[index] = error.name
        assert got == expected

    def _note_repaid(self, repaid: list[tuple[bytes, int]], ref: bytes, kind: str) -> None:
        """(r2) The debt the model's last issue or refund paid, if any, for `_check_repaid`."""
        if self.model.last_debt_repaid:
            event(f"{kind}: repaid a debt")
            repaid.append((ref, self.model.last_debt_repaid))

    def _check_repaid(self, result: BatchResult, repaid: list[tuple[bytes, int]]) -> None:
        found = [(bytes(e.args["receiptRef"]), e.args["points"]) for e in result.named("DebtRepaid")]
        assert found == repaid, "DebtRepaid events"

    def _fresh_reason(self, partner_id: int, amount_ok: bool, now: int | None = None) -> str:
        """What the contract says of a well-formed op with a fresh nonce and a bad signature
        (`now`: the block's time, for issuing operations, which wait for a new partner)."""
        partner = self.model.partners.get(partner_id)
        if partner is None:
            return "UnknownPartner"
        if not partner.active:
            return "PartnerSuspended"
        if now is not None and now < partner.active_from:
            return "PartnerNotYetActive"
        if not amount_ok:
            return "AmountOutOfRange"
        return "InvalidSignature"

    def _debtors(self) -> list[int]:
        """The machine's members (indexes) that owe points, without adding any to the model."""
        return [i for i, (_, a) in enumerate(self.people) if (m := self.model.members.get(a.lower())) and m.debt]

    def _key(self, partner_id: int) -> str:
        return self.keys.get(partner_id) or key_for("nobody")

    def _address(self, who: int) -> str:
        return self.people[who][1]

    def _balance(self, who: int) -> int:
        return self.model.balance(self._address(who), self.month)

    def _expiry_now(self) -> int:
        return NEVER if self.model.expiry_months == 0 else self.month + self.model.expiry_months

    def _travel(self, target: int) -> None:
        """Moves the clock to `target`, or to the 1st of a later month if `target` would come
        too near the end of this one (the machine's month must hold for the next blocks)."""
        if month_of(target + DAY) == self.month:
            self.world.chain.travel_to(target)
            return
        self.month = month_of(target + DAY)
        self.world.goto_month(self.month, day=max(1, (target - month_start(self.month)) // DAY + 2))

    # ------------------------------------------------------------ signed batches

    @rule(
        ops=st.lists(
            st.tuples(
                partner_ids,
                members,
                st.one_of(st.integers(1, 300_000), st.sampled_from([0, 1, 99, 2**64])),
                st.sampled_from(
                    [
                        "ok",
                        "ok",
                        "ok",
                        "ok",
                        "capped",
                        "replay",
                        "wrong_key",
                        "old_key",
                        "foreign_chain",
                        "campaign",
                        "campaign",
                        "campaign",
                        "other_campaign",
                    ]
                ),
                st.one_of(st.integers(0, 3_000), st.just(MAX_OP_POINTS)),
            ),
            min_size=1,
            max_size=3,
        )
    )
    def earn_batch(self, ops: list[tuple[int, int, int, str, int]]) -> None:
        """Earns; `capped` signs a most-points figure the earn may exceed (finding 5)."""
        w = self.world
        signed: list[tuple[SignedEarn, str]] = []
        for partner, who, spend, variant, cap in ops:
            address = self._address(who)
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
            elif variant == "capped":
                op = w.earn_op(partner, address, spend, key=self._key(partner), max_points=cap)
            elif variant in ("campaign", "other_campaign"):
                # (r2) A campaign of the earning partner (capped now and then), or another
                # partner's or an unknown one (UnknownCampaign). "campaign" earns at the partner
                # of the newest campaign still running with budget left (else the newest), so
                # bonuses are paid, budgets run out and windows close under the run's eyes.
                pool = []
                if variant == "campaign" and self.model.campaigns:
                    now = self._now()
                    running = [
                        c for c, t in self.model.campaigns.items() if t.start <= now + 1 < t.end and t.spent < t.budget
                    ]
                    pool = [running[-1] if running else len(self.model.campaigns)]
                    partner = self.model.campaigns[pool[0]].partner_id
                others = [c for c, terms in self.model.campaigns.items() if terms.partner_id != partner]
                pool = pool if variant == "campaign" else others
                cid = pool[-1] if pool and pool[-1] else len(self.model.campaigns) + 1
                limit = cap if cap % 3 == 0 else MAX_OP_POINTS
                op = w.earn_op(partner, address, spend, key=self._key(partner), campaign_id=cid, max_points=limit)
                variant = "ok"
            else:
                variant = "ok" if variant != "replay" else variant
                op = w.earn_op(partner, address, spend, key=self._key(partner))
            signed.append((op, variant))
        result = self._submit(lambda: w.ledger.earn_batch(w.relayer, [op for op, _ in signed], gas=BATCH_GAS))
        if result is None:
            return
        assert result.earn_month == self.month
        now = self._block_time(result.receipt)
        expected: list[str | None] = []
        issued: list[int] = []
        bonuses: list[tuple[int, int]] = []
        repaid: list[tuple[bytes, int]] = []
        for op, variant in signed:
            m = op.message
            if variant in ("wrong_key", "old_key", "foreign_chain"):
                expected.append(self._fresh_reason(m.partner_id, 0 < m.spend < 2**64, now))
                continue
            try:
                points = self.model.earn(
                    partner_id=m.partner_id,
                    member=m.member,
                    spend=m.spend,
                    nonce=m.nonce,
                    month=self.month,
                    max_points=m.max_points,
                    now=now,
                    campaign_id=getattr(m, "campaign_id", 0),
                )
            except Rejected as rejected:
                expected.append(rejected.reason)
                continue
            expected.append(None)
            issued.append(points)
            bonuses.append((getattr(m, "campaign_id", 0), self.model.last_bonus))
            if self.model.last_bonus:
                event("earn: with a campaign bonus")
            elif getattr(m, "campaign_id", 0):
                event("earn: named a campaign, bonus 0 (window, tier, minimum spend or budget)")
            self._note_repaid(repaid, m.receipt_ref, "earn")
            self.accepted_earns.append(op)
        self._expect(result, expected, "earn")
        self._check_repaid(result, repaid)
        assert [e.args["points"] for e in result.named("Earned")] == issued
        assert [(e.args["campaignId"], e.args["bonus"]) for e in result.named("Earned")] == bonuses, "campaign bonuses"
        expiry = self._expiry_now()
        self.issues += [Issue(r, p, expiry, True) for r, p in zip(result.earn_records(), issued, strict=True)]

    @precondition(lambda self: bool(self._debtors()))
    @rule(data=st.data(), spend=st.integers(1, 300_000), points=st.integers(1, 3_000))
    def issue_to_a_debtor(self, data: st.DataObject, spend: int, points: int) -> None:
        """(r2) Points issued to a member in debt, by an earn, then an award if a debt is left:
        `DebtRepaid` first, the rest to the balance, checked by `earn_batch` / `award_batch`
        against the model. Without it a debt was rarely followed by an issue in a 50-step run."""
        who = data.draw(st.sampled_from(self._debtors()))
        self.earn_batch([(1, who, spend, "ok", 0)])
        if who in self._debtors():
            self.award_batch([(1, who, points, 1, "ok")])

    @rule(
        budget=st.sampled_from([20, 200, 5000]),
        bonus=st.sampled_from([(10000, 0), (5000, 3), (0, 25)]),
        ops=st.lists(st.tuples(members, st.integers(1, 300_000), st.integers(0, 3_000)), min_size=1, max_size=3),
    )
    def earn_at_a_campaign(self, budget: int, bonus: tuple[int, int], ops: list[tuple[int, int, int]]) -> None:
        """(r2) Purchases naming a campaign at its own partner: a running one with budget left,
        registered first (every tier, no minimum) when none is, then checked by `earn_batch` like
        any earn. Without this rule (one among forty, whose campaigns the clock soon closes),
        bonuses were too rare for a run to see a budget run out."""
        now = self._now()
        running = [c for c, t in self.model.campaigns.items() if t.start <= now + 1 < t.end and t.spent < t.budget]
        if not running:
            issuing = [p for p, m in self.model.partners.items() if m.active and m.active_from <= now]
            if not issuing:
                return
            self.create_campaign(issuing[0], "running", bonus, 0, 0b111, budget, "ok")
        self.earn_batch([(1, who, spend, "campaign", cap) for who, spend, cap in ops])

    @rule(
        partner=partner_ids,
        window=st.sampled_from(["running", "running", "running", "later", "over"]),
        bonus=st.sampled_from([(10_000, 0), (5_000, 3), (0, 25), (2_500, 0), (1_000_000, 0)]),
        min_spend=st.sampled_from([0, 0, 5_000, 50_000]),
        tier_mask=st.sampled_from([0b111, 0b111, 0b001, 0b110, 0b100]),
        budget=st.sampled_from([1, 50, 500, 5_000]),
        variant=st.sampled_from(
            [
                "ok",
                "ok",
                "ok",
                "empty_window",
                "no_tier",
                "no_budget",
                "no_bonus",
                "too_big",
                "wrong_key",
                "replay",
                "late",
            ]
        ),
    )
    def create_campaign(
        self,
        partner: int,
        window: str,
        bonus: tuple[int, int],
        min_spend: int,
        tier_mask: int,
        budget: int,
        variant: str,
    ) -> None:
        """(r2) A partner registers a campaign (anyone submits its signature): windows running,
        to come or over; multiplier and/or fixed bonus; minimum spend; tiers; small budgets.
        Refused: empty window, no tier, no budget, no bonus, above 100x, a wrong key, a replay,
        a past deadline, an unknown or suspended partner."""
        w = self.world
        now = self._now()
        start = {"running": now - DAY, "later": now + 2 * DAY, "over": now - 20 * DAY}[window]
        changes: dict[str, int] = {
            "empty_window": {"end": start},
            "no_tier": {"tier_mask": 0},
            "no_budget": {"budget": 0},
            "no_bonus": {"bonus_bps": 0, "fixed_bonus": 0},
            "too_big": {"bonus_bps": 1_000_001},
        }.get(variant, {})
        if variant == "replay" and self.last_campaign is not None:
            message, key = self.last_campaign
        else:
            values = {
                "start": start,
                "end": start + 10 * DAY,
                "bonus_bps": bonus[0],
                "fixed_bonus": bonus[1],
                "min_spend": min_spend,
                "tier_mask": tier_mask,
                "budget": budget,
                "nonce": w.nonce(),
                "deadline": now - 1 if variant == "late" else FAR_DEADLINE,
            } | changes
            message = CampaignMessage(partner_id=partner, **values)
            key = key_for("impostor") if variant == "wrong_key" else self._key(partner)
        signature = sign(w.ledger.domain, message, key)
        # The contract's order: the partner, the terms, the deadline, the nonce, the signature.
        expected: str | None = None
        c = CampaignModel(*message.terms())
        partner_model = self.model.partners.get(message.partner_id)
        if partner_model is None:
            expected = "UnknownPartner"
        elif not partner_model.active:
            expected = "PartnerSuspended"
        elif c.start >= c.end or not c.tier_mask or not c.budget or c.bonus_bps > 1_000_000:
            expected = "InvalidCampaign"
        elif not c.bonus_bps and not c.fixed_bonus:
            expected = "InvalidCampaign"
        elif message.deadline < now + 1:
            expected = "SignatureExpired"
        elif (message.partner_id, message.nonce) in self.model.used_partner_nonces:
            expected = "NonceAlreadyUsed"
        elif key != self._key(message.partner_id):
            expected = "InvalidSignature"
        event(f"createCampaign: {expected or 'applied'}")
        if expected is not None:
            with pytest.raises(LedgerRevert, match=expected):
                create_campaign(w.ledger, w.relayer, message, signature)
            w.relayer._nonce = None
            return
        campaign_id = create_campaign(w.ledger, w.relayer, message, signature)
        assert campaign_id == self.model.create_campaign(c, nonce=message.nonce)
        self.last_campaign = (message, key)

    @rule(
        ops=st.lists(
            st.tuples(
                partner_ids,
                members,
                st.one_of(st.integers(1, 5_000), st.sampled_from([0, MAX_OP_POINTS + 1])),
                st.one_of(st.integers(1, 7), st.sampled_from([0, 8, 255])),
                st.sampled_from(["ok", "ok", "ok", "replay", "wrong_key", "old_key"]),
            ),
            min_size=1,
            max_size=3,
        )
    )
    def award_batch(self, ops: list[tuple[int, int, int, int, str]]) -> None:
        """Awards with every reason code and refused ones; never qualifying points."""
        w = self.world
        signed: list[tuple[SignedAward, str]] = []
        for partner, who, points, reason, variant in ops:
            if variant == "replay" and self.accepted_awards:
                signed.append((self.accepted_awards[-1], variant))
                continue
            key = self._key(partner)
            if variant == "wrong_key":
                key = key_for("impostor")
            elif variant == "old_key" and partner in self.retired_keys:
                key = self.retired_keys[partner]
            else:
                variant = "ok"
            message = AwardMessage(
                partner, self._address(who), points, reason, keccak(text=f"award-{w.nonce()}"), w.nonce(), FAR_DEADLINE
            )
            signed.append((SignedAward(message, sign(w.ledger.domain, message, key)), variant))
        result = self._submit(lambda: w.ledger.award_batch(w.relayer, [op for op, _ in signed], gas=BATCH_GAS))
        if result is None:
            return
        now = self._block_time(result.receipt)
        expected: list[str | None] = []
        issued: list[int] = []
        repaid: list[tuple[bytes, int]] = []
        for op, variant in signed:
            m = op.message
            if variant in ("wrong_key", "old_key"):
                reason = self._fresh_reason(m.partner_id, 0 < m.points <= MAX_OP_POINTS, now)
                if reason == "InvalidSignature" and not 1 <= m.reason <= 7:
                    reason = "InvalidReason"
                expected.append(reason)
                continue
            try:
                self.model.award(
                    partner_id=m.partner_id,
                    member=m.member,
                    points=m.points,
                    reason=m.reason,
                    nonce=m.nonce,
                    month=self.month,
                    now=now,
                )
            except Rejected as rejected:
                expected.append(rejected.reason)
                continue
            expected.append(None)
            issued.append(m.points)
            self._note_repaid(repaid, m.receipt_ref, "award")
            self.accepted_awards.append(op)
        self._expect(result, expected, "award")
        self._check_repaid(result, repaid)
        assert [e.args["points"] for e in result.named("Awarded")] == issued
        expiry = self._expiry_now()
        self.issues += [Issue(r, p, expiry, False) for r, p in zip(result.earn_records(), issued, strict=True)]

    @rule(
        ops=st.lists(
            st.tuples(
                members,
                partner_ids,
                # Small amounts too: members hold tens of points, and refunds need redemptions.
                st.one_of(st.integers(1, 3_000), st.integers(1, 40), st.just(0), st.just(ALL)),
                st.sampled_from(["ok", "ok", "ok", "replay", "wrong_key"]),
            ),
            min_size=1,
            max_size=3,
        )
    )
    def redeem_batch(self, ops: list[tuple[int, int, int, str]]) -> None:
        w = self.world
        signed: list[tuple[SignedRedeem, str]] = []
        accepted: list[tuple[SignedRedeem, int]] = []  # with the latest expiry month each burnt
        for who, partner, points, variant in ops:
            key = self.people[who][0]
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
                expiry = self.model.redeem(
                    partner_id=m.partner_id, member=m.member, points=m.points, nonce=m.nonce, month=self.month
                )
            except Rejected as rejected:
                expected.append(rejected.reason)
                continue
            expected.append(None)
            self.accepted_redeems.append(op)
            accepted.append((op, expiry))
        self._expect(result, expected, "redeem")
        # Each accepted redemption's committed leaf carries the latest expiry month it burnt:
        # the model's, as a refund of it will restore.
        records = result.redemption_records()
        assert [(r.partner_id, r.member, r.points, r.expiry_month) for r in records] == [
            (op.message.partner_id, to_checksum_address(op.message.member), op.message.points, expiry)
            for op, expiry in accepted
        ], "committed redemptions"
        self.redemptions += [Redemption(r, r.member) for r in records]

    @precondition(lambda self: bool(self.redemptions))
    @rule(
        data=st.data(),
        count=st.integers(1, 2),
        variant=st.sampled_from(
            ["ok", "ok", "ok", "ok", "other_partner", "wrong_key", "old_key", "replay", "forged", "late"]
        ),
    )
    def refund_batch(self, data: st.DataObject, count: int, variant: str) -> None:
        """Refunds of redemptions (r2): over the cap, zero points, by another partner, with a
        wrong or retired key, a replay, a forged record, a past deadline; after the burnt
        points expired (a fresh expiry) and after the member migrated (to the holder)."""
        w = self.world
        planned: list[tuple[SignedRefund, Redemption, str]] = []
        for _ in range(count):
            redemption = data.draw(st.sampled_from(self.redemptions))
            record = redemption.record
            points = data.draw(st.integers(0, record.points + 1))  # 0: AmountOutOfRange
            pid = record.partner_id
            kind = variant
            if variant == "replay" and self.accepted_refunds:
                op, redemption = self.accepted_refunds[-1]
            elif variant == "other_partner":
                other = data.draw(st.sampled_from([p for p in range(1, MAX_PARTNER_ID + 1) if p != pid]))
                op = w.refund_op(record, points, partner_id=other, key=self._key(other))
            elif variant == "wrong_key":
                op = w.refund_op(record, points, key=key_for("thief"))
            elif variant == "old_key" and pid in self.retired_keys:
                op = w.refund_op(record, points, key=self.retired_keys[pid])
            elif variant == "forged":
                op = w.refund_op(replace(record, points=record.points + 1_000), points, key=self._key(pid))
            elif variant == "late":
                op = w.refund_op(record, points, key=self._key(pid), deadline=self._now() - 1)
            else:
                kind = "ok" if variant != "replay" else "replay"
                op = w.refund_op(record, points, key=self._key(pid))
            planned.append((op, redemption, kind))
        result = self._submit(lambda: w.ledger.refund_batch(w.relayer, [p[0] for p in planned], gas=BATCH_GAS))
        if result is None:
            return
        expected: list[str | None] = []
        repaid: list[tuple[bytes, int]] = []
        for op, redemption, kind in planned:
            m, record = op.message, redemption.record
            amount_ok = 0 < m.points <= MAX_OP_POINTS
            if kind == "other_partner":
                expected.append(
                    self._fresh_reason(m.partner_id, amount_ok).replace("InvalidSignature", "UnknownRedemption")
                )
                continue
            if kind in ("wrong_key", "old_key"):
                expected.append(self._fresh_reason(m.partner_id, amount_ok))
                continue
            if kind == "late":
                expected.append(
                    self._fresh_reason(m.partner_id, amount_ok).replace("InvalidSignature", "SignatureExpired")
                )
                continue
            try:
                self.model.refund(
                    partner_id=record.partner_id,
                    leaf=op.redemption.leaf(),
                    member=redemption.member,
                    redeemed_points=record.points,
                    expiry_month=record.expiry_month,
                    points=m.points,
                    nonce=m.nonce,
                    month=self.month,
                    known=kind != "forged",
                )
            except Rejected as rejected:
                expected.append(rejected.reason)
                continue
            expected.append(None)
            self._note_repaid(repaid, m.receipt_ref, "refund")
            self.accepted_refunds.append((op, redemption))
        self._expect(result, expected, "refund")
        self._check_repaid(result, repaid)

    @precondition(lambda self: bool(self.issues))
    @rule(
        data=st.data(),
        count=st.integers(1, 2),
        variant=st.sampled_from(["ok", "ok", "ok", "spent", "spent", "other_partner", "old_key"]),
    )
    def reverse_batch(self, data: st.DataObject, count: int, variant: str) -> None:
        """Reversals of earns and awards, over the cap, by another partner, after expiry (finding
        3); (r2) `spent`: the holder first redeems all but a few of its points, so the reversal
        finds it short (debt, or a rejection when the policy is off)."""
        w = self.world
        planned = []
        for n in range(count):
            issue = data.draw(st.sampled_from(self.issues))
            record = issue.record
            if variant == "spent" and n == 0:
                self._spend_down(self.model.holder(record.member), data.draw(st.integers(0, issue.points)))
            points = data.draw(st.integers(1, issue.points + 1))
            pid = record.partner_id
            if variant == "other_partner":
                other = data.draw(st.sampled_from([p for p in range(1, MAX_PARTNER_ID + 1) if p != pid]))
                op = w.reverse_op(record, points, partner_id=other, key=self._key(other))
            elif variant == "old_key" and pid in self.retired_keys:
                op = w.reverse_op(record, points, key=self.retired_keys[pid])
            else:
                op = w.reverse_op(record, points, key=self._key(pid))
            planned.append((op, issue, points))
        result = self._submit(lambda: w.ledger.reverse_batch(w.relayer, [p[0] for p in planned], gas=BATCH_GAS))
        if result is None:
            return
        expected: list[str | None] = []
        debts: list[tuple[bytes, int]] = []
        for op, issue, points in planned:
            m, record = op.message, issue.record
            if m.partner_id != record.partner_id:
                expected.append(self._fresh_reason(m.partner_id, True).replace("InvalidSignature", "UnknownEarn"))
                continue
            if variant == "old_key" and record.partner_id in self.retired_keys:
                expected.append(self._fresh_reason(m.partner_id, True))
                continue
            if self.model.holder(record.member) != record.member.lower():
                event("reverse: of points that migrated since")  # the holder rule of LedgerBase._holder
            try:
                debt = self.model.reverse(
                    partner_id=record.partner_id,
                    leaf=record.leaf(),
                    member=record.member,
                    earn_points=issue.points,
                    earn_month=record.earn_month,
                    points=points,
                    nonce=m.nonce,
                    month=self.month,
                    expiry_month=issue.expiry,
                    qualifying=issue.qualifying,
                    bonus=record.bonus,  # (r2) taken back first: it never qualified
                )
            except Rejected as rejected:
                if rejected.reason == "InsufficientPoints":
                    event("reverse: short of points, debt policy off")
                expected.append(rejected.reason)
                continue
            expected.append(None)
            if debt:
                event("reverse: debt recorded")
                debts.append((m.receipt_ref, debt))
        self._expect(result, expected, "reverse")
        found = [(bytes(e.args["receiptRef"]), e.args["points"]) for e in result.named("DebtRecorded")]
        assert found == debts, "DebtRecorded events"
        applied = [op.message.points for (op, _, _), reason in zip(planned, expected, strict=True) if reason is None]
        assert [e.args["points"] for e in result.named("Reversed")] == applied, "Reversed: the whole reversal"

    def _spend_down(self, holder: str, keep: int) -> None:
        """(r2) The holder redeems all but `keep` of its points at the first active partner, in
        a batch of its own (checked like any redemption)."""
        who = next((i for i, (_, a) in enumerate(self.people) if a.lower() == holder), None)
        partner = next((p for p in PARTNER_IDS if self.model.partners[p].active), None)
        points = self._balance(who) - keep if who is not None else 0
        if who is None or partner is None or points <= 0 or self.model.paused:
            return
        w = self.world
        op = w.redeem_op(self.people[who][0], partner, points)
        result = w.ledger.redeem_batch(w.relayer, [op], gas=BATCH_GAS)
        self._count_expired(result.events)
        expiry = self.model.redeem(
            partner_id=partner, member=holder, points=points, nonce=op.message.nonce, month=self.month
        )
        assert result.rejections() == [] and len(result.named("Redeemed")) == 1
        [record] = result.redemption_records()
        assert record.expiry_month == expiry
        self.redemptions.append(Redemption(record, record.member))  # a refund of it may repay a debt

    @rule(swept=st.lists(members, max_size=len(MEMBERS)), stranger=strangers)
    def expire(self, swept: list[int], stranger: bool) -> None:
        """The public sweep: anyone may call it, for any addresses (a non-member included)."""
        addresses = [self._address(i) for i in swept] + ([STRANGER[1]] if stranger else [])
        result = self._submit(lambda: self.world.ledger.expire(self.world.relayer, addresses))
        if result is None:
            return
        for i in swept:
            address = self._address(i)
            expired = sum(p for e, p in self.model.member(address).buckets.items() if e < self.month)
            assert self.expired_events.get(address.lower(), 0) == expired, f"Expired events of member {i}"

    # ------------------------------------------------------------ ERC-20 and migration

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
        to = self._address(recipient)
        expected = self._transfer_error(sender, points)
        self._send(self.senders[sender], "transfer", to, points, expect=expected)
        if expected is None:
            self.model.transfer(sender=self._address(sender), recipient=to, points=points, month=self.month)

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
        to = self._address(recipient)
        self._send(self.senders[spender], "transferFrom", self._address(owner), to, points, expect=expected)
        if expected is None:
            if approved != MAX_UINT:
                self.approvals[(owner, spender)] = approved - points
            self.model.transfer(sender=self._address(owner), recipient=to, points=points, month=self.month)

    @precondition(running)
    @rule(owner=members, spender=members, value=st.one_of(st.integers(0, 5_000), st.just(MAX_UINT)))
    def approve(self, owner: int, spender: int, value: int) -> None:
        self._send(self.senders[owner], "approve", self._address(spender), value)
        self.approvals[(owner, spender)] = value

    @precondition(running)
    @rule(
        who=members,
        into=st.one_of(st.just(-1), st.just(-1), members),  # -1: a fresh address of its own
        variant=st.sampled_from(["ok", "ok", "ok", "wrong_key", "replay", "expired", "from_old", "into_old"]),
    )
    def migrate(self, who: int, into: int, variant: str) -> None:
        """A member moves everything to a new address (works with transfers off); refused into
        an address in use (another member, itself, one a migration left), from an address its
        points already left, with a wrong key, a replay, a past deadline."""
        w = self.world
        key, source = self.people[who]
        if variant == "from_old" and self.migrated:
            key, source = self.migrated[-1]  # its points moved on: it may not move them again
        self.key_versions += 1
        new_key = key_for(f"sm-wallet-{self.key_versions}")
        if into != -1 and into != who:
            other = self.model.members.get(self.people[into][1].lower())
            if other is not None and (any(other.buckets.values()) or other.earned or other.assigned or other.debt):
                new_key = self.people[into][0]  # refused: in use (one never used would end up twice)
        elif into == who:
            new_key = key  # refused: itself
        if variant == "into_old" and self.migrated:
            new_key = self.migrated[0][0]  # an address a migration left: refused
        to = address_of(new_key)
        nonce, deadline = w.nonce(), FAR_DEADLINE
        if variant == "expired":
            deadline = self._now() - 1
        message = MigrateMessage(source, to, nonce, deadline)
        signature = sign(w.ledger.domain, message, key_for("thief") if variant == "wrong_key" else key)
        expected: str | None = None
        if variant == "wrong_key":
            expected = "InvalidSignature"
        elif variant == "expired":
            expected = "SignatureExpired"
        try:
            # The model's checks come first, as the contract's do; a bad signature only
            # matters for an otherwise valid request.
            probe = PointsModel(
                members=dict(self.model.members),
                used_member_nonces=set(self.model.used_member_nonces),
                origin_of=dict(self.model.origin_of),
                current_of=dict(self.model.current_of),
            )
            if self.model.member(source).debt:
                event("migrate: with a debt")
            probe.migrate(source=source, target=to, nonce=nonce)
        except Rejected as rejected:
            expected = rejected.reason
        event(f"migrate: {expected or 'applied'}")
        if expected is not None:
            with pytest.raises(LedgerRevert, match=expected):
                w.ledger.migrate(w.relayer, message, signature)
            w.relayer._nonce = None
            return
        receipt = w.ledger.migrate(w.relayer, message, signature)
        self._count_expired(w.ledger.decode_logs(receipt))
        self.model.migrate(source=source, target=to, nonce=nonce)
        if variant == "replay":  # the same signature again: the nonce is spent
            with pytest.raises(LedgerRevert):
                w.ledger.migrate(w.relayer, message, signature)
            w.relayer._nonce = None
        self.expired_events[to.lower()] = self.expired_events.pop(source.lower(), 0)
        self.migrated.append((key, source))
        self.people[who] = (new_key, to)
        self.world.chain.fund(to, 10**20)
        self.senders[who] = Sender(w.chain.w3, new_key)
        # ERC-20 allowances stay with the old address: the new one starts with none.
        self.approvals = {k: v for k, v in self.approvals.items() if who not in k}

    # ------------------------------------------------------------ scheduled changes

    def _schedule(self, stranger: bool, kind: int, function: str, *args: Any, value: object, **kw: Any) -> int | None:
        """Schedules a change (or checks its refusal); the model records it with the block's time."""
        expect: str | None = kw.get("expect")
        partner_id: int = kw.get("partner_id", 0)
        receipt = self._operator_call(stranger, function, *args, expect=expect)
        if receipt is None:
            return None
        change_id = self.model.schedule(kind, value, now=self._block_time(receipt), partner_id=partner_id)
        events = self.world.ledger.decode_logs(receipt)
        assert [e.args["changeId"] for e in events if e.name == "ChangeScheduled"] == [
            change_id + self.first_change - 1
        ]
        return change_id

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
        self._schedule(stranger, CHANGE_EXPIRY, "setExpiryMonths", months, value=months, expect=bad)

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
        expect = "InvalidTierTable" if defect else None
        self._schedule(stranger, CHANGE_TIERS, "setTiers", table, value=table, expect=expect)

    @precondition(running)
    @rule(allowed=st.booleans(), stranger=strangers)
    def set_debt_policy(self, allowed: bool, stranger: bool) -> None:
        """(r2) The debt policy, a change under notice: on, a reversal beyond the holder's
        points records debt; off, it is rejected."""
        self._schedule(stranger, CHANGE_DEBT_POLICY, "setDebtPolicy", allowed, value=allowed)

    @precondition(running)
    @rule(partner=partner_ids, rate=st.one_of(rates, st.just((0, 1)), st.just((1, 0))), stranger=strangers)
    def set_partner_rate(self, partner: int, rate: tuple[int, int], stranger: bool) -> None:
        expected = "UnknownPartner" if partner not in self.model.partners else ("InvalidRate" if 0 in rate else None)
        self._schedule(
            stranger, CHANGE_RATE, "setPartnerRate", partner, *rate, value=rate, partner_id=partner, expect=expected
        )

    @precondition(running)
    @rule(
        partner=partner_ids,
        prices=st.tuples(st.sampled_from([0, 1, 7, 10**6, 2**128 - 1]), st.sampled_from([0, 1, 5, 10**6])),
        stranger=strangers,
    )
    def set_partner_prices(self, partner: int, prices: tuple[int, int], stranger: bool) -> None:
        expected = None if partner in self.model.partners else "UnknownPartner"
        self._schedule(
            stranger,
            CHANGE_PRICES,
            "setPartnerPrices",
            partner,
            *prices,
            value=prices,
            partner_id=partner,
            expect=expected,
        )

    @precondition(running)
    @rule(value=st.integers(0, 10**6), currency=st.sampled_from(["EUR", "GBP"]), stranger=strangers)
    def set_point_value(self, value: int, currency: str, stranger: bool) -> None:
        self._schedule(stranger, CHANGE_POINT_VALUE, "setPointValue", value, currency.encode(), value=(value, currency))

    @precondition(running)
    @rule(partner=partner_ids, zero=st.sampled_from([False, False, False, True]), stranger=strangers)
    def request_signer_change(self, partner: int, zero: bool, stranger: bool) -> None:
        """The operator's request for a partner whose key is lost (finding 2): only after notice."""
        self.key_versions += 1
        key = key_for(f"sm-partner-{partner}-v{self.key_versions}")
        signer = "0x" + "00" * 20 if zero else address_of(key)
        expected = "UnknownPartner" if partner not in self.model.partners else ("InvalidSigner" if zero else None)
        change_id = self._schedule(
            stranger,
            CHANGE_SIGNER,
            "requestSignerChange",
            partner,
            signer,
            value=signer,
            partner_id=partner,
            expect=expected,
        )
        if change_id is not None:
            self.signer_keys[change_id] = key

    def _apply_model(self, change_id: int, now: int) -> None:
        change = self.model.changes[change_id]
        if change.kind == CHANGE_SIGNER:
            self.retired_keys[change.partner_id] = self.keys[change.partner_id]
            self.keys[change.partner_id] = self.signer_keys[change_id]
        elif change.kind == CHANGE_POINT_VALUE:
            assert isinstance(change.value, tuple)
            self.point_value = change.value
        self.model.apply_change(change_id, now=now)

    @rule(data=st.data(), when=st.sampled_from(["due", "due", "early", "unknown"]))
    def apply_change(self, data: st.DataObject, when: str) -> None:
        """Anyone applies a due change; too early or twice, refused. (Allowed while paused: a
        change moves no balance.)"""
        pending = [i for i, c in self.model.changes.items() if c.state == "pending"]
        if when == "unknown" or not pending:
            done = [i for i, c in self.model.changes.items() if c.state != "pending"]
            change_id = data.draw(st.sampled_from([*done, len(self.model.changes) + 1]))
            self._send(self.stranger, "applyChange", change_id + self.first_change - 1, expect="UnknownChange")
            return
        change_id = data.draw(st.sampled_from(pending))
        effective_at = self.model.changes[change_id].effective_at
        if when == "early":
            if effective_at <= self._now() + 120:  # too near to tell the next block's time
                return
            self._send(self.stranger, "applyChange", change_id + self.first_change - 1, expect="ChangeNotDue")
            return
        if self._now() < effective_at:
            self._travel(effective_at)
        receipt = self._send(self.stranger, "applyChange", change_id + self.first_change - 1)
        self._apply_model(change_id, self._block_time(receipt))

    @precondition(running)
    @rule(data=st.data(), stranger=strangers)
    def cancel_change(self, data: st.DataObject, stranger: bool) -> None:
        change_id = data.draw(st.sampled_from([*self.model.changes, len(self.model.changes) + 1]))
        change = self.model.changes.get(change_id)
        expected = None if change is not None and change.state == "pending" else "UnknownChange"
        if self._operator_call(stranger, "cancelChange", change_id + self.first_change - 1, expect=expected):
            self.model.cancel_change(change_id)

    @rule(data=st.data(), current_key=st.sampled_from([True, True, False]))
    def cancel_signer_change(self, data: st.DataObject, current_key: bool) -> None:
        """The partner's current key withdraws an operator's signer request; no other key can."""
        requests = [i for i, c in self.model.changes.items() if c.kind == CHANGE_SIGNER]
        if not requests:
            return
        change_id = data.draw(st.sampled_from(requests))
        change = self.model.changes[change_id]
        message = CancelChangeMessage(change.partner_id, change_id + self.first_change - 1)
        key = self._key(change.partner_id) if current_key else key_for("impostor")
        expected = None
        if change.state != "pending":
            expected = "UnknownChange"
        elif not current_key:
            expected = "InvalidSignature"
        signature = sign(self.world.ledger.domain, message, key)
        event(f"cancelSignerChange: {expected or 'applied'}")
        if expected is not None:
            with pytest.raises(LedgerRevert, match=expected):
                self.world.ledger.cancel_signer_change(self.world.relayer, message, signature)
            self.world.relayer._nonce = None
            return
        self.world.ledger.cancel_signer_change(self.world.relayer, message, signature)
        self.model.cancel_change(change_id)

    @rule(
        partner=partner_ids, variant=st.sampled_from(["ok", "ok", "wrong_key", "old_key", "replay", "zero", "expired"])
    )
    def rotate_signer(self, partner: int, variant: str) -> None:
        """The partner replaces its own key with its current key's signature: at once."""
        w = self.world
        if variant == "replay" and self.used_rotations:
            message, signature = self.used_rotations[-1]
            with pytest.raises(LedgerRevert, match="NonceAlreadyUsed|InvalidSignature"):
                w.ledger.rotate_signer(w.relayer, message, signature)
            w.relayer._nonce = None
            return
        self.key_versions += 1
        new_key = key_for(f"sm-partner-{partner}-v{self.key_versions}")
        new_signer = "0x" + "00" * 20 if variant == "zero" else address_of(new_key)
        deadline = self._now() - 1 if variant == "expired" else FAR_DEADLINE
        message = RotateSignerMessage(partner, new_signer, w.nonce(), deadline)
        key = self._key(partner)
        if variant == "wrong_key":
            key = key_for("impostor")
        elif variant == "old_key":
            key = self.retired_keys.get(partner, key_for("impostor"))
        signature = sign(w.ledger.domain, message, key)
        expected = None
        if partner not in self.model.partners:
            expected = "UnknownPartner"
        elif variant == "zero":
            expected = "InvalidSigner"
        elif variant == "expired":
            expected = "SignatureExpired"
        elif variant in ("wrong_key", "old_key"):
            expected = "InvalidSignature"
        event(f"rotateSigner: {expected or 'applied'}")
        if expected is not None:
            with pytest.raises(LedgerRevert, match=expected):
                w.ledger.rotate_signer(w.relayer, message, signature)
            w.relayer._nonce = None
            return
        w.ledger.rotate_signer(w.relayer, message, signature)
        self.model.rotate_signer(partner, new_signer, nonce=message.nonce)
        self.used_rotations.append((message, signature))
        self.retired_keys[partner] = self.keys[partner]
        self.keys[partner] = new_key

    # ------------------------------------------------------------ immediate operator calls

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
        """A new partner issues nothing until the notice period is over."""
        pid = len(self.model.partners) + 1
        key = key_for(f"sm-partner-{pid}")
        args = (address_of(key), *rate, b"CHF", allowance)
        receipt = self._operator_call(stranger, "addPartner", *args)
        if receipt is not None:
            partner = PartnerModel(address_of(key), *rate, "CHF", allowance)
            self.model.add_partner(pid, partner, now=self._block_time(receipt))
            self.keys[pid] = key

    @precondition(running)
    @rule(
        who=members,
        tier=st.one_of(st.integers(0, 4), st.just(MAX_TIERS)),
        days=st.sampled_from([0, 1, 10, 40, 400]),
        stranger=strangers,
    )
    def assign_tier(self, who: int, tier: int, days: int, stranger: bool) -> None:
        """A tier until a date (0 days withdraws it); tiers past the table's end refused."""
        until = 0 if days == 0 else self._now() + days * DAY
        expected = "InvalidTier" if tier >= MAX_TIERS else None
        address = self._address(who)
        if self._operator_call(stranger, "assignTier", address, tier, until, expect=expected):
            self.model.assign_tier(address, tier, until)

    @precondition(running)
    @rule(enabled=st.booleans(), stranger=strangers)  # on in the base state: see HISTORY_MONTHS
    def set_transfers_enabled(self, enabled: bool, stranger: bool) -> None:
        if self._operator_call(stranger, "setTransfersEnabled", enabled):
            self.model.transfers_enabled = enabled

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
            if abs(self._now() + 1 - schedule) < 120:  # too near to tell the next block's time
                return
            if self._now() + 1 <= schedule:
                expected = "AccessControlEnforcedDefaultAdminDelay"
        self._send(self.operators[by], "acceptDefaultAdminTransfer", expect=expected)
        if expected is None:
            self.admin, self.pending_admin = by, None

    # ------------------------------------------------------------ time

    @rule(days=st.sampled_from([1, 2, 3, 4, 8]))
    def wait(self, days: int) -> None:
        """Days pass: notice periods run out (3 days), assigned tiers end."""
        self._travel(self._now() + days * DAY)

    @rule(months=st.one_of(st.just(1), st.sampled_from([1, 2, 3, 11, 12, 13]), st.integers(1, 14), st.integers(1, 72)))
    def skip_months(self, months: int) -> None:
        self.month += months
        self.world.goto_month(self.month, day=1)

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
        assert timestamp < month_start(month + 1) - DAY // 2, "the clock came too near the month's end"
        addresses = [a for _, a in self.people]
        calls: list[tuple[str, tuple[Any, ...]]] = []
        for address in addresses:
            calls += [
                ("balanceOf", (address,)),
                ("qualifyingPoints", (address,)),
                ("tierOf", (address,)),
                ("expiringOf", (address,)),
                ("assignedTier", (address,)),
            ]
        calls += [("balanceOf", (a,)) for _, a in self.migrated]
        # (r2) Debt: each member's (a migrated-from address owes nothing), the sum, the policy.
        calls += [("debtOf", (a,)) for a in addresses] + [("debtOf", (a,)) for _, a in self.migrated]
        calls += [("totalDebt", ()), ("debtAllowed", ())]
        # (r2) Campaigns: how many, and each one's spent budget (never above its budget).
        campaign_ids = sorted(self.model.campaigns)
        calls += [("campaignCount", ())] + [("campaign", (c,)) for c in campaign_ids]
        partners = list(range(1, MAX_PARTNER_ID + 1))
        calls += [("totalSupply", ()), ("partnerCount", ())]
        calls += [("partner", (pid,)) for pid in partners] + [("partnerPrices", (pid,)) for pid in partners]
        settings_calls: list[tuple[str, tuple[Any, ...]]] = [
            ("tiers", ()),
            ("expiryMonths", ()),
            ("transfersEnabled", ()),
            ("paused", ()),
            ("pointValue", ()),
            ("defaultAdmin", ()),
            ("pendingDefaultAdmin", ()),
            ("changeCount", ()),
        ]
        approvals = sorted(self.approvals)
        leaves = sorted(self.model.reversed_of)
        changes = sorted(self.model.changes)
        calls += settings_calls
        calls += [("allowance", (addresses[o], addresses[s])) for o, s in approvals]
        calls += [("reversedOf", (leaf,)) for leaf in leaves]
        refund_leaves = sorted(self.model.refunded_of)
        calls += [("refunded", (pid,)) for pid in partners]
        calls += [("refundedOf", (leaf,)) for leaf in refund_leaves]
        calls += [("changeOf", (i + self.first_change - 1,)) for i in changes]
        values = iter(w.ledger.views(calls, block))

        balances = 0
        for i, address in enumerate(addresses):
            balance, qualifying, tier, (months, points), assigned = (next(values) for _ in range(5))
            assert balance == self.model.balance(address, month), f"balance of member {i}"
            assert qualifying == self.model.qualifying(address, month), f"qualifying points of member {i}"
            assert tier == self.model.tier_index(address, month, timestamp), f"tier of member {i}"
            assert list(zip(months, points, strict=True)) == self.model.expiring(address, month), f"buckets of {i}"
            model_assigned = self.model.member(address).assigned or (0, 0)
            assert tuple(assigned) == model_assigned, f"assigned tier of member {i}"
            assert self.expired_events.get(address.lower(), 0) <= sum(
                p for e, p in self.model.member(address).buckets.items() if e < month
            ), f"more Expired events than expired points for member {i}"
            balances += balance
        for _, address in self.migrated:
            assert next(values) == 0, f"{address} migrated away but still holds points"
        for i, address in enumerate(addresses):
            assert next(values) == self.model.member(address).debt, f"debt of member {i}"
        for _, address in self.migrated:
            assert next(values) == 0, f"{address} migrated away but still owes points"
        total_debt, debt_allowed = next(values), next(values)
        assert total_debt == self.model.total_debt(), "totalDebt"
        assert debt_allowed == self.model.debt_allowed, "debt policy"
        assert next(values) == len(self.model.campaigns), "campaign count"
        for c in campaign_ids:
            terms, spent = next(values)
            expected_campaign = self.model.campaigns[c]
            assert tuple(terms)[0] == expected_campaign.partner_id, f"campaign {c}"
            assert spent == expected_campaign.spent <= expected_campaign.budget, f"spent budget of campaign {c}"
        supply, count = next(values), next(values)
        assert supply == balances, "totalSupply is not the sum of balances"
        assert count == len(self.model.partners)
        issued = redeemed = reversed_ = 0
        infos = [next(values) for _ in partners]
        prices = [next(values) for _ in partners]
        for pid, info, price in zip(partners, infos, prices, strict=True):
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
            assert (info[5], info[6], info[7], info[8], info[9], info[10]) == (
                p.allowance,
                p.issued,
                p.reversed,
                p.redeemed,
                p.active_from,
                p.awarded,
            ), f"totals of partner {pid}"
            assert tuple(price) == (p.issue_price, p.redemption_price), f"prices of partner {pid}"
            issued, reversed_, redeemed = issued + info[6], reversed_ + info[7], redeemed + info[8]
        expired = self.model.expired(month)
        refunded = 0  # (r2) per partner, read after the settings below

        tiers, expiry_months, transfers, paused, (value, currency), admin, (pending, _), change_count = (
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
        assert change_count == len(self.model.changes) + self.first_change - 1
        for owner, spender in approvals:
            assert next(values) == self.approvals[(owner, spender)], f"ERC-20 allowance {owner} -> {spender}"
        for leaf in leaves:
            assert next(values) == self.model.reversed_of[leaf]
        for pid in partners:
            model_partner = self.model.partners.get(pid)
            value = next(values)
            assert value == (model_partner.refunded if model_partner else 0), f"refunded by partner {pid}"
            refunded += value
        for leaf in refund_leaves:
            assert next(values) == self.model.refunded_of[leaf], "refundedOf a redemption"
        assert supply == issued - redeemed + refunded - reversed_ - expired + total_debt, (
            "supply is not issued - redeemed + refunded - reversed - expired + outstanding debt"
        )
        for i in changes:
            kind, state, partner_id, effective_at, _ = next(values)
            c = self.model.changes[i]
            assert (kind, STATES[state], partner_id, effective_at) == (c.kind, c.state, c.partner_id, c.effective_at), (
                f"change {i}"
            )


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


@pytest.mark.slow(seconds=180)
@pytest.mark.anvil
class TestLedgerStateMachineOnAnvil(LedgerMachine.TestCase):  # type: ignore[name-defined]
    pass
