// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ICoalitionPoints} from "../ICoalitionPoints.sol";
import {ILedger} from "./ILedger.sol";
import {LedgerGhost} from "./LedgerGhost.sol";
import {vm, Vm} from "./Vm.sol";

/// @notice Drives every state-changing function of the revision-2 ledger (the ledger, its admin
/// module and its programme module, all at the ledger's address) with bounded inputs, checks each
/// answer against the ghost (`LedgerGhost`), and keeps the ghost in step. One external function
/// per entry point, plus the clock; fixed actors (six members, two operator keys, a stranger,
/// partner keys that rotate).
/// @dev A call the ghost expects to succeed is made directly, so with `fail_on_revert` any revert
/// (a whole batch reverting, say) fails the run; a call the ghost expects to be refused must
/// revert with the expected error; a batch's rejected operations must be exactly the ones the
/// ghost rejects, each with the ghost's reason (`OperationRejected` events).
contract LedgerHandler is LedgerGhost {
    bytes32 internal constant REJECTED_EVENT = keccak256("OperationRejected(uint8,uint256,bytes32,bytes)");
    bytes32 internal constant EARNED_EVENT =
        keccak256("Earned(uint32,address,bytes32,uint256,uint256,uint32,uint64,uint256)");
    bytes32 internal constant AWARDED_EVENT = keccak256("Awarded(uint32,address,bytes32,uint256,uint8,uint32)");
    uint8 internal constant KIND_EARN = 1;
    uint8 internal constant KIND_REDEEM = 2;
    uint8 internal constant KIND_REVERSE = 3;
    uint8 internal constant KIND_AWARD = 4;
    uint8 internal constant KIND_REFUND = 5;
    bytes32 internal constant REFUNDED_EVENT = keccak256("Refunded(uint32,address,bytes32,uint256,bytes32,uint32)");
    bytes32 internal constant DEBT_RECORDED_EVENT = keccak256("DebtRecorded(uint32,address,bytes32,uint256)");

    /// @dev A batch operation the ledger answered otherwise than the ghost: `got` is the
    /// ledger's reason ("accepted" if it applied it), `expected` the ghost's.
    error OperationDiffers(string batch, uint256 index, string expected, string got, bytes reason);
    /// @dev A single call the ledger answered otherwise than the ghost expected.
    error CallDiffers(string call, string expected, string got, bytes err);
    error IssuedDiffers(uint8 kind, uint256 index, uint256 expectedPoints, uint256 points, uint256 expiry);

    /// @dev A signed earn kept back, submitted by a later call (after rate, tier or signer
    /// changes and warps): the signature binds `maxPoints`.
    struct HeldEarn {
        ICoalitionPoints.EarnOp op;
        uint256 key;
    }

    struct RotateCall {
        uint32 partnerId;
        address newSigner;
        uint256 nonce;
        uint256 deadline;
        bytes32 r;
        bytes32 vs;
    }

    struct MigrateCall {
        address from;
        address to;
        uint256 nonce;
        uint256 deadline;
        bytes32 r;
        bytes32 vs;
    }

    HeldEarn[] internal _held;
    uint256[] internal _expectedBonus; // (r2) per earn of the batch being checked: the ghost's bonus
    ICoalitionPoints.CampaignTerms internal _lastCampaign;
    uint256 internal _lastCampaignNonce;
    uint256 internal _lastCampaignKey;
    ICoalitionPoints.EarnOp internal _lastEarn;
    uint256 internal _lastEarnKey;
    ICoalitionPoints.AwardOp internal _lastAward;
    uint256 internal _lastAwardKey;
    ICoalitionPoints.RedeemOp internal _lastRedeem;
    uint256 internal _lastRedeemKey;
    ICoalitionPoints.ReverseOp internal _lastReverse;
    uint256 internal _lastReverseKey;
    uint256 internal _lastReverseEarn;
    ICoalitionPoints.RefundOp internal _lastRefund;
    uint256 internal _lastRefundKey;
    uint256 internal _lastRefundOf;
    RotateCall internal _lastRotate;
    uint256 internal _lastRotateKey;
    uint256 internal _lastRotateNewKey;
    MigrateCall internal _lastMigrate;
    address internal _lastApprover;
    address internal _lastSpender;

    /// @notice What a campaign exercised: per ledger function, the calls (batch operations)
    /// it applied, and the refusals per error selector.
    mapping(bytes4 => uint256) public applied;
    mapping(bytes4 => mapping(bytes4 => uint256)) public refused;

    /// @dev Every call's events go through `_logs` (the audit-trail ghost).
    modifier recorded() {
        vm.recordLogs();
        _;
        _logs();
    }

    constructor(ILedger ledger_, address operator0, address operator1) {
        ledger = ledger_;
        operators = [operator0, operator1];
        _domainSeparator = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("Coalition Points"),
                keccak256("1"),
                block.chainid,
                address(ledger_)
            )
        );
        for (uint256 i = 0; i < ACTORS; ++i) {
            _actorKeys[i] = 0xA11CE0 + i;
            actors[i] = vm.addr(_actorKeys[i]);
        }
        ghostTime = block.timestamp;
        ghostMonth = ledger.currentMonth();
        _warpToMonth(2026 * 12 + 5);
        vm.recordLogs();
        _seed();
        _logs();
    }

    /// @dev The starting programme (set before the first partner, so it applies at once), three
    /// partners, and some history: members 0-3 hold ten, five, two and one months of buckets
    /// (the ring's bugs need several), members 4 and 5 nothing (migration targets); then
    /// transfers on.
    function _seed() internal {
        ICoalitionPoints.Tier[] memory table = new ICoalitionPoints.Tier[](3);
        table[0] = ICoalitionPoints.Tier(0, uint32(BPS));
        table[1] = ICoalitionPoints.Tier(500, 12_500);
        table[2] = ICoalitionPoints.Tier(2_000, 20_000);
        _scheduleTiers(table, 1);
        require(_changes[1].state == 2, "seed: a change before the first partner applies at once");
        // (r2) Debt allowed from the start (a handler call switches it, under notice): off, a
        // campaign seldom reaches a reversal that records debt and the issues that repay it.
        vm.prank(operators[0]);
        ledger.setDebtPolicy(true);
        _recordChange(CHANGE_DEBT_POLICY, 0, 1, 0);
        require(ledger.debtAllowed() && ghostDebtAllowed, "seed: the debt policy applies at once");
        _addPartner(1, 100, 10 ** 12);
        _addPartner(3, 200, 20_000);
        _addPartner(5, 1, 2_000_000);
        uint8[ACTORS] memory history = [10, 5, 2, 1, 0, 0];
        for (uint256 age = 10; age > 0; --age) {
            _warpToMonth(ghostMonth + 1);
            for (uint256 i = 0; i < ACTORS; ++i) {
                if (history[i] < age) continue;
                ICoalitionPoints.EarnOp[] memory ops = new ICoalitionPoints.EarnOp[](1);
                uint256[] memory keys = new uint256[](1);
                keys[0] = _partners[1].key;
                ops[0] = _earnOp(1, actors[i], (i + 1) * 1_000 + age * 100, type(uint256).max, ghostTime + 1 days, keys[0]);
                _submitEarns(ops, keys);
            }
        }
        _warpToMonth(ghostMonth + 1);
        vm.prank(operators[0]);
        ledger.setTransfersEnabled(true);
        ghostTransfers = true;
        require(_earns.length == 18, "seed: an earn was rejected");
    }

    // ================================================================ signed batches

    /// @notice earnBatch of one to three earns. Variants: valid with `maxPoints` exact, above or
    /// unbounded; `maxPoints` one short (MaxPointsExceeded); spend 0 or above 2^64-1; a huge
    /// spend (AmountOutOfRange or a big issue); a wrong, retired or requested-but-not-applied
    /// key (InvalidSignature); a replay (NonceAlreadyUsed); a past deadline (SignatureExpired);
    /// member 0; a signed earn held back from earlier; and, by the partner chosen, unknown,
    /// suspended and not-yet-active partners, allowances short.
    function earnBatch(uint256 seed, uint256 size) external recorded {
        size = 1 + size % 3;
        ICoalitionPoints.EarnOp[] memory ops = new ICoalitionPoints.EarnOp[](size);
        uint256[] memory keys = new uint256[](size);
        for (uint256 i = 0; i < size; ++i) {
            (ops[i], keys[i]) = _pickEarn(uint256(keccak256(abi.encode(seed, i))));
        }
        // Now and then the same signed earn twice in one batch: the second is a replay.
        if (size > 1 && (seed >> 128) % 6 == 0) (ops[size - 1], keys[size - 1]) = (ops[0], keys[0]);
        _submitEarns(ops, keys);
    }

    /// @notice earnBatch of four to eight earns (Merkle proofs three levels deep for reversals;
    /// several earns of one member in one batch, each at the tier the previous ones gave it).
    function earnBatchLarge(uint256 seed, uint256 size) external recorded {
        size = 4 + size % 5;
        ICoalitionPoints.EarnOp[] memory ops = new ICoalitionPoints.EarnOp[](size);
        uint256[] memory keys = new uint256[](size);
        for (uint256 i = 0; i < size; ++i) {
            (ops[i], keys[i]) = _pickEarn(uint256(keccak256(abi.encode(seed, "large", i))));
        }
        _submitEarns(ops, keys);
    }

    /// @notice Signs an earn now (maxPoints = what it would issue now) and keeps it for later.
    function signEarnForLater(uint256 seed) external recorded {
        if (_held.length >= 4) return;
        uint32 pid = _pid(seed);
        address member = _actor(seed >> 8);
        uint256 key = _partners[pid].key == 0 ? BAD_KEY : _partners[pid].key;
        uint256 spend = _bound(seed >> 16, 100, 300_000);
        uint256 deadline = ghostTime + _bound(seed >> 64, 1 hours, 90 days);
        ICoalitionPoints.EarnOp memory op = _earnOp(pid, member, spend, type(uint256).max, deadline, key);
        (, uint256 points,) = _checkEarn(op, key);
        op = _earnOp(pid, member, spend, points == 0 ? 1 : points, deadline, key);
        _held.push(HeldEarn(op, key));
    }

    /// @notice redeemBatch of one or two redemptions: valid (some or all of the balance), short
    /// of points, zero or out-of-range points, forged (a thief's key), a replay, a past
    /// deadline, member 0, at an unknown or suspended partner.
    function redeemBatch(uint256 seed, uint256 size) external recorded {
        size = 1 + size % 2;
        ICoalitionPoints.RedeemOp[] memory ops = new ICoalitionPoints.RedeemOp[](size);
        uint256[] memory keys = new uint256[](size);
        for (uint256 i = 0; i < size; ++i) {
            (ops[i], keys[i]) = _pickRedeem(uint256(keccak256(abi.encode(seed, i))));
        }
        if (_pausedCall(abi.encodeCall(ILedger.redeemBatch, (ops)))) return;
        _submitRedeems(ops, keys);
    }

    /// @dev A redemption batch the ghost checks and records (not paused).
    function _submitRedeems(ICoalitionPoints.RedeemOp[] memory ops, uint256[] memory keys) internal {
        uint256 size = ops.length;
        bytes4[] memory errs = new bytes4[](size);
        uint24[] memory expiries = new uint24[](size);
        for (uint256 i = 0; i < size; ++i) {
            errs[i] = _checkRedeem(ops[i], keys[i]);
            if (errs[i] == 0) expiries[i] = _applyRedeem(ops[i]);
        }
        uint256 accepted = ledger.redeemBatch(ops);
        _checkRejections(KIND_REDEEM, errs, accepted);
        // (r2) The accepted redemptions, committed with the latest expiry month each burnt.
        bytes32[] memory leaves = new bytes32[](size);
        uint256 n;
        for (uint256 i = 0; i < size; ++i) {
            if (errs[i] != 0) continue;
            (_lastRedeem, _lastRedeemKey) = (ops[i], keys[i]);
            ICoalitionPoints.RedeemOp memory op = ops[i];
            _redemptions.push(
                GhostRedemption(
                    op.partnerId, ghostRedeemBatchCount + 1, uint32(n), op.member, op.receiptRef, op.points, expiries[i]
                )
            );
            leaves[n++] = _redemptionLeaf(_redemptions[_redemptions.length - 1]);
        }
        if (n != 0) {
            uint64 batchId = ++ghostRedeemBatchCount;
            require(ledger.redeemBatchCount() == batchId, "redemption batch count differs from the ghost");
            for (uint256 i = 0; i < n; ++i) {
                _redeemLeaves[batchId].push(leaves[i]);
            }
        }
    }

    /// @notice refundBatch (r2) of one or two refunds of recorded redemptions: valid (part or
    /// all of what is left, after the burnt points expired too, after the member migrated), over
    /// the cap (RefundExceedsRedemption), by another partner or with a forged record or an
    /// unknown batch (UnknownRedemption), a retired or wrong key, a replay, a past deadline,
    /// zero or out-of-range points, at a suspended partner.
    function refundBatch(uint256 seed, uint256 size) external recorded {
        if (_redemptions.length == 0) return;
        size = 1 + size % 2;
        ICoalitionPoints.RefundOp[] memory ops = new ICoalitionPoints.RefundOp[](size);
        uint256[] memory keys = new uint256[](size);
        uint256[] memory which = new uint256[](size);
        for (uint256 i = 0; i < size; ++i) {
            (ops[i], keys[i], which[i]) = _pickRefund(uint256(keccak256(abi.encode(seed, i))));
        }
        if (_pausedCall(abi.encodeCall(ILedger.refundBatch, (ops)))) return;
        bytes4[] memory errs = new bytes4[](size);
        uint256[] memory expiries = new uint256[](size);
        address[] memory holders = new address[](size);
        for (uint256 i = 0; i < size; ++i) {
            GhostRedemption memory g = _redemptions[which[i]];
            errs[i] = _checkRefund(ops[i], g, keys[i]);
            if (errs[i] == 0) (expiries[i], holders[i]) = (_applyRefund(ops[i], g), _holder(g.member));
        }
        uint256 accepted = ledger.refundBatch(ops);
        Vm.Log[] memory logs = _checkRejections(KIND_REFUND, errs, accepted);
        // Each `Refunded` event, in order, is an accepted refund: the holder, the points, the
        // ghost's expiry month.
        uint256 next;
        for (uint256 j = 0; j < logs.length; ++j) {
            if (logs[j].emitter != address(ledger) || logs[j].topics[0] != REFUNDED_EVENT) continue;
            while (next < size && errs[next] != 0) ++next;
            require(next < size, "a Refunded event the ghost did not expect");
            (uint256 points,, uint32 expiry) = abi.decode(logs[j].data, (uint256, bytes32, uint32));
            address member = address(uint160(uint256(logs[j].topics[2])));
            if (points != ops[next].points || expiry != expiries[next] || member != holders[next]) {
                revert IssuedDiffers(KIND_REFUND, next, ops[next].points, points, expiry);
            }
            ++next;
        }
        for (uint256 i = 0; i < size; ++i) {
            if (errs[i] == 0) (_lastRefund, _lastRefundKey, _lastRefundOf) = (ops[i], keys[i], which[i]);
        }
    }

    /// @notice reverseBatch of one or two reversals of recorded earns and awards: valid (part or
    /// all of what is left), over the cap (ReversalExceedsEarn), by another partner or with a
    /// forged record (UnknownEarn), a retired or wrong key, a replay, a past deadline, zero
    /// points, after the earn's points expired (EarnExpired), the member short of points.
    function reverseBatch(uint256 seed, uint256 size) external recorded {
        if (_earns.length == 0) return;
        size = 1 + size % 2;
        ICoalitionPoints.ReverseOp[] memory ops = new ICoalitionPoints.ReverseOp[](size);
        uint256[] memory keys = new uint256[](size);
        uint256[] memory which = new uint256[](size);
        for (uint256 i = 0; i < size; ++i) {
            (ops[i], keys[i], which[i]) = _pickReverse(uint256(keccak256(abi.encode(seed, i))));
        }
        if (_pausedCall(abi.encodeCall(ILedger.reverseBatch, (ops)))) return;
        // (r2) One reversal in three finds its holder having spent all but a few of its points
        // (a redemption first): debt under the policy, else InsufficientPoints.
        if ((seed >> 200) % 3 == 0) _spendDown(_holder(_earns[which[0]].member), (seed >> 208) % 50);
        bytes4[] memory errs = new bytes4[](size);
        uint256[] memory debts = new uint256[](size);
        for (uint256 i = 0; i < size; ++i) {
            GhostEarn memory e = _earns[which[i]];
            errs[i] = _checkReverse(ops[i], e, keys[i]);
            if (errs[i] == 0) debts[i] = _applyReverse(ops[i], e);
        }
        uint256 accepted = ledger.reverseBatch(ops);
        Vm.Log[] memory logs = _checkRejections(KIND_REVERSE, errs, accepted);
        // Each `DebtRecorded`, in order, is the shortfall of an accepted reversal (r2).
        uint256 next;
        for (uint256 j = 0; j < logs.length; ++j) {
            if (logs[j].emitter != address(ledger) || logs[j].topics[0] != DEBT_RECORDED_EVENT) continue;
            while (next < size && (errs[next] != 0 || debts[next] == 0)) ++next;
            require(next < size, "a DebtRecorded event the ghost did not expect");
            uint256 points = abi.decode(logs[j].data, (uint256));
            require(points == debts[next] && logs[j].topics[3] == ops[next].receiptRef, "DebtRecorded differs");
            ++applied[bytes4(DEBT_RECORDED_EVENT)];
            ++next;
        }
        while (next < size && (errs[next] != 0 || debts[next] == 0)) ++next;
        require(next == size, "a debt the ghost expected has no DebtRecorded event");
        for (uint256 i = 0; i < size; ++i) {
            if (errs[i] == 0) (_lastReverse, _lastReverseKey, _lastReverseEarn) = (ops[i], keys[i], which[i]);
        }
    }

    /// @dev (r2) `holder` redeems all but `keep` of its points at an active partner, through
    /// the ghost like any redemption (nothing if paused or nothing to redeem).
    function _spendDown(address holder, uint256 keep) internal {
        uint256 i = _indexOf(holder);
        uint256 balance = ghostBalance(holder);
        if (ghostPaused || actors[i] != holder || balance <= keep) return;
        uint32 pid = 1;
        while (pid <= ghostPartnerCount && _partnerError(pid) != 0) ++pid;
        if (pid > ghostPartnerCount) return;
        ICoalitionPoints.RedeemOp[] memory ops = new ICoalitionPoints.RedeemOp[](1);
        uint256[] memory keys = new uint256[](1);
        keys[0] = _actorKeys[i];
        ops[0] = ICoalitionPoints.RedeemOp(
            holder, pid, balance - keep, keccak256(abi.encode("spend", ++_nonce)), _opNonce(_nonce << 8), ghostTime + 1 days, 0, 0
        );
        ICoalitionPoints.RedeemOp memory op = ops[0];
        (ops[0].r, ops[0].vs) = _sign(
            keys[0], keccak256(abi.encode(REDEEM_TYPEHASH, op.member, op.partnerId, op.points, op.receiptRef, op.nonce, op.deadline))
        );
        _submitRedeems(ops, keys);
    }

    /// @notice (r2) createCampaign, signed by the partner, by anyone: valid terms (windows
    /// running, past or to come; multiplier and/or fixed bonus; minimum spends; tier masks;
    /// small budgets, so they run out); refused: an empty window, no tier, no budget, no bonus,
    /// a multiplier above 100x (InvalidCampaign), a wrong or retired key (InvalidSignature), a
    /// replay (NonceAlreadyUsed), a past deadline, an unknown or suspended partner.
    function createCampaign(uint256 seed, uint256 variant) external recorded {
        variant %= 14;
        uint32 pid = _pid(seed);
        uint256 key = _partners[pid].key == 0 ? BAD_KEY : _partners[pid].key;
        uint256 nonce = _opNonce(seed >> 200);
        uint256 deadline = variant == 6 ? ghostTime - 1 : ghostTime + 1 days;
        uint256 start = (seed >> 8) % 3 == 0 ? ghostTime + _bound(seed >> 16, 1, 20 days) : ghostTime - _bound(seed >> 16, 0, 20 days);
        uint24[5] memory multipliers = [uint24(0), 5_000, 10_000, 25_000, 1_000_000];
        uint48[3] memory fixed_ = [uint48(0), 1, 50];
        ICoalitionPoints.CampaignTerms memory t = ICoalitionPoints.CampaignTerms(
            pid,
            uint40(start),
            uint40(start + _bound(seed >> 48, 1 hours, 60 days)),
            multipliers[(seed >> 80) % 5],
            fixed_[(seed >> 84) % 3],
            uint64(_bound(seed >> 88, 0, 40_000)),
            uint8(1 + (seed >> 120) % 255),
            uint128(_bound(seed >> 128, 1, 5_000))
        );
        if (t.bonusBps == 0 && t.fixedBonus == 0 && variant != 3) t.fixedBonus = 10;
        if (variant == 0) t.end = t.start;
        if (variant == 1) t.tierMask = 0;
        if (variant == 2) t.budget = 0;
        if (variant == 3) (t.bonusBps, t.fixedBonus) = (0, 0);
        if (variant == 4) t.bonusBps = uint24(MAX_BONUS_BPS + 1);
        if (variant == 5) key = (seed >> 190) % 2 == 0 || _partners[pid].retiredKey == 0 ? BAD_KEY : _partners[pid].retiredKey;
        if (variant == 7 && _lastCampaignNonce != 0) (t, nonce, key) = (_lastCampaign, _lastCampaignNonce, _lastCampaignKey);
        (bytes32 r, bytes32 vs) = _sign(key, keccak256(abi.encode(CAMPAIGN_TYPEHASH, t, nonce, deadline)));
        bytes4 expected = _partnerError(t.partnerId);
        if (expected == 0) {
            if (t.start >= t.end || t.tierMask == 0 || t.budget == 0 || t.bonusBps > MAX_BONUS_BPS || (t.bonusBps == 0 && t.fixedBonus == 0)) {
                expected = ICoalitionPoints.InvalidCampaign.selector;
            } else if (ghostTime > deadline) {
                expected = ICoalitionPoints.SignatureExpired.selector;
            } else if (_partnerNonceUsed[t.partnerId][nonce]) {
                expected = ICoalitionPoints.NonceAlreadyUsed.selector;
            } else if (key != _partners[t.partnerId].key) {
                expected = ICoalitionPoints.InvalidSignature.selector;
            }
        }
        address caller = seed % 3 == 0 ? stranger : _actor(seed >> 4);
        if (_call(caller, abi.encodeCall(ILedger.createCampaign, (t, nonce, deadline, r, vs)), expected)) {
            _partnerNonceUsed[t.partnerId][nonce] = true;
            _ghostCampaigns.push(GhostCampaign(t, 0));
            require(ledger.campaignCount() == _ghostCampaigns.length, "campaign id differs from the ghost");
            (_lastCampaign, _lastCampaignNonce, _lastCampaignKey) = (t, nonce, key);
        }
    }

    /// @notice (r2) Schedules the debt policy (a change under notice; a stranger is refused).
    function setDebtPolicy(bool allowed, uint256 who) external recorded {
        if (_operatorCall(who, abi.encodeCall(ILedger.setDebtPolicy, (allowed)), 0)) {
            _expectChangeId(_recordChange(CHANGE_DEBT_POLICY, 0, allowed ? 1 : 0, 0));
        }
    }

    /// @notice awardBatch of one to three awards: every reason code 1-7 and invalid ones (0, 8,
    /// 255), zero, out-of-range and above-allowance points, wrong and retired keys, a replay, a
    /// past deadline, member 0, unknown, suspended and not-yet-active partners.
    function awardBatch(uint256 seed, uint256 size) external recorded {
        size = 1 + size % 3;
        ICoalitionPoints.AwardOp[] memory ops = new ICoalitionPoints.AwardOp[](size);
        uint256[] memory keys = new uint256[](size);
        for (uint256 i = 0; i < size; ++i) {
            (ops[i], keys[i]) = _pickAward(uint256(keccak256(abi.encode(seed, i))));
        }
        if (_pausedCall(abi.encodeCall(ILedger.awardBatch, (ops)))) return;
        bytes4[] memory errs = new bytes4[](size);
        uint256[] memory points = new uint256[](size);
        for (uint256 i = 0; i < size; ++i) {
            errs[i] = _checkAward(ops[i], keys[i]);
            if (errs[i] == 0) {
                _applyAward(ops[i]);
                points[i] = ops[i].points;
            }
        }
        uint256 accepted = ledger.awardBatch(ops);
        Vm.Log[] memory logs = _checkRejections(KIND_AWARD, errs, accepted);
        bytes32[] memory leaves = new bytes32[](size);
        uint256 n;
        for (uint256 i = 0; i < size; ++i) {
            if (errs[i] != 0) continue;
            ICoalitionPoints.AwardOp memory op = ops[i];
            _earns.push(
                GhostEarn(op.partnerId, ghostBatchCount + 1, uint8(n), op.member, op.receiptRef, 0, op.points, ghostMonth, _expiryFor(), 0)
            );
            leaves[n++] = _leaf(_earns[_earns.length - 1]);
            (_lastAward, _lastAwardKey) = (op, keys[i]);
        }
        _commitBatch(leaves, n);
        delete _expectedBonus;
        _checkIssued(KIND_AWARD, logs, AWARDED_EVENT, _partnerIds(ops), keys, points, errs);
    }

    /// @notice The public sweep over any set of members (and a non-member).
    function expire(uint256 mask) external recorded {
        address[] memory list = new address[](ACTORS + 1);
        uint256 n;
        for (uint256 i = 0; i < ACTORS; ++i) {
            if (mask & (1 << i) != 0) list[n++] = actors[i];
        }
        if (mask & (1 << ACTORS) != 0) list[n++] = stranger;
        assembly ("memory-safe") {
            mstore(list, n)
        }
        if (_pausedCall(abi.encodeCall(ILedger.expire, (list)))) return;
        ledger.expire(list);
        ++applied[ILedger.expire.selector];
        for (uint256 i = 0; i < n; ++i) {
            if (_months[list[i]].length != 0) _sweep(list[i]);
        }
    }

    // ================================================================ ERC-20

    /// @notice transfer between members, self-transfers and zero included; on or off, paused or not.
    function transfer(uint256 fromSeed, uint256 toSeed, uint256 amount) external recorded {
        address from = _actor(fromSeed);
        address to = _actor(toSeed);
        amount = amount % 8 == 0 ? ghostBalance(from) : _bound(amount, 0, ghostBalance(from) + 3);
        bytes4 expected = _transferError(from, amount);
        bool ok = _call(from, abi.encodeCall(ILedger.transfer, (to, amount)), expected);
        if (ok) _move(from, to, amount);
    }

    /// @notice transferFrom by an approved (or not) member, to itself or another.
    function transferFrom(uint256 spenderSeed, uint256 ownerSeed, uint256 toSeed, uint256 amount) external recorded {
        address spender = _actor(spenderSeed);
        address owner = _actor(ownerSeed);
        if (spenderSeed % 2 == 0 && _lastApprover != address(0)) (owner, spender) = (_lastApprover, _lastSpender);
        address to = _actor(toSeed);
        uint256 approved = ghostApproval[owner][spender];
        uint256 kind = amount % 8;
        amount = kind == 0
            ? ghostBalance(owner)
            : _bound(amount, 0, (kind < 4 && approved < ghostBalance(owner) ? approved : ghostBalance(owner)) + 3);
        bytes4 expected = approved < amount ? ILedger.ERC20InsufficientAllowance.selector : _transferError(owner, amount);
        if (_call(spender, abi.encodeCall(ILedger.transferFrom, (owner, to, amount)), expected)) {
            if (approved != type(uint256).max) ghostApproval[owner][spender] = approved - amount;
            _move(owner, to, amount);
        }
    }

    function approve(uint256 ownerSeed, uint256 spenderSeed, uint256 value) external recorded {
        address owner = _actor(ownerSeed);
        address spender = _actor(spenderSeed);
        value = value % 5 == 0 ? type(uint256).max : _bound(value, 0, 5_000);
        _call(owner, abi.encodeCall(ILedger.approve, (spender, value)), 0);
        ghostApproval[owner][spender] = value;
        (_lastApprover, _lastSpender) = (owner, spender);
    }

    // ================================================================ operator: at once

    /// @notice Adds a partner (it issues only after the notice period); a zero rate
    /// (InvalidRate) or a zero signer (InvalidSigner) refused.
    function addPartner(uint256 rateSeed, uint256 allowance, uint256 who) external recorded {
        if (ghostPartnerCount >= MAX_PARTNERS) return;
        (uint32 rp, uint32 rpm) = _rate(rateSeed);
        uint256 bad = (rateSeed >> 8) % 8;
        if (_isStranger(who) || bad < 2) {
            address signer = bad == 0 ? address(0) : stranger;
            if (bad == 1) rp = 0;
            bytes4 expected = bad == 0
                ? ICoalitionPoints.InvalidSigner.selector
                : (bad == 1 ? ICoalitionPoints.InvalidRate.selector : bytes4(0));
            if (expected == 0) expected = ILedger.AccessControlUnauthorizedAccount.selector; // only strangers get here
            _operatorCall(who, abi.encodeCall(ILedger.addPartner, (signer, rp, rpm, "EUR", 1)), expected);
            return;
        }
        _addPartner(rp, rpm, allowance % 4 == 0 ? type(uint128).max : _bound(allowance, 0, 10 ** 7));
    }

    function setPartnerActive(uint256 partnerSeed, bool active, uint256 who) external recorded {
        uint32 pid = _pid(partnerSeed);
        bytes4 expected = _partners[pid].key == 0 ? ICoalitionPoints.UnknownPartner.selector : bytes4(0);
        if (_operatorCall(who, abi.encodeCall(ILedger.setPartnerActive, (pid, active)), expected)) {
            _partners[pid].active = active;
        }
    }

    /// @notice Any allowance up to 2^128-1.
    function setAllowance(uint256 partnerSeed, uint256 amount, uint256 who) external recorded {
        uint32 pid = _pid(partnerSeed);
        amount = amount % 6 == 0 ? type(uint128).max : (amount % 6 == 1 ? 0 : _bound(amount, 1, 10 ** 12));
        bytes4 expected = _partners[pid].key == 0 ? ICoalitionPoints.UnknownPartner.selector : bytes4(0);
        uint256 before = _partners[pid].key == 0 ? 0 : ledger.partner(pid).allowance;
        if (_operatorCall(who, abi.encodeCall(ILedger.setAllowance, (pid, uint128(amount))), expected)) {
            _partners[pid].allowance = amount;
            if (amount > before) ghostAllowedTotal[pid] += amount - before;
        }
    }

    function setTransfersEnabled(bool enabled, uint256 who) external recorded {
        if (_operatorCall(who, abi.encodeCall(ILedger.setTransfersEnabled, (enabled)), 0)) ghostTransfers = enabled;
    }

    /// @notice A real pause one call in three (else a stranger's, refused), so pauses stay short.
    function pause(uint256 who) external recorded {
        if (who % 3 != 0) who = 0; // _isStranger(0) is true
        bytes4 expected = ghostPaused ? ILedger.EnforcedPause.selector : bytes4(0);
        if (_operatorCall(who, abi.encodeCall(ILedger.pause, ()), expected)) ghostPaused = true;
    }

    function unpause(uint256 who) external recorded {
        bytes4 expected = ghostPaused ? bytes4(0) : ILedger.ExpectedPause.selector;
        if (_operatorCall(who, abi.encodeCall(ILedger.unpause, ()), expected)) ghostPaused = false;
    }

    /// @notice Gives a member at least a tier until a time: in the future, past, 0 (withdrawn);
    /// an index past the table (capped at its top), 8 or more (InvalidTier), member 0.
    function assignTier(uint256 actorSeed, uint256 tier, uint256 untilSeed, uint256 who) external recorded {
        address member = actorSeed % 9 == 8 ? address(0) : _actor(actorSeed);
        tier = tier % 11;
        uint256 kind = untilSeed % 4;
        uint64 until = kind == 0
            ? 0
            : uint64(kind == 1 ? ghostTime - _bound(untilSeed >> 8, 0, 30 days) : ghostTime + _bound(untilSeed >> 8, 1, 400 days));
        bytes4 expected = member == address(0)
            ? ICoalitionPoints.InvalidMember.selector
            : (tier >= MAX_TIERS ? ICoalitionPoints.InvalidTier.selector : bytes4(0));
        if (_operatorCall(who, abi.encodeCall(ILedger.assignTier, (member, uint8(tier), until)), expected)) {
            GhostMember storage g = _members[member];
            // No end date withdraws the assignment: nothing of it is kept.
            (g.tier, g.until, g.flagged) = (until == 0 ? 0 : uint8(tier), until, until != 0);
        }
    }

    // ================================================================ operator: scheduled changes

    /// @notice Schedules an expiry policy: shortened, lengthened, 0 = never, up to 120 (often
    /// 120 itself, the most buckets a member can hold); above refused.
    function setExpiryMonths(uint256 months, uint256 who) external recorded {
        uint256 kind = months % 6;
        months = kind == 0 ? MAX_EXPIRY_MONTHS : (kind < 3 ? _bound(months >> 8, 0, 14) : _bound(months >> 8, 0, 125));
        bytes4 expected = months > MAX_EXPIRY_MONTHS ? ICoalitionPoints.InvalidExpiryMonths.selector : bytes4(0);
        if (_operatorCall(who, abi.encodeCall(ILedger.setExpiryMonths, (uint16(months))), expected)) {
            _expectChangeId(_recordChange(CHANGE_EXPIRY, 0, months, 0));
        }
    }

    /// @notice Schedules a tier table of one to eight rows, or a malformed one (refused with
    /// InvalidTierTable: a zero or above-100x multiplier, a first threshold above 0, thresholds
    /// not ascending, nine rows, none).
    function setTiers(uint256 seed, uint256 who) external recorded {
        uint256 bad = (seed >> 200) % 16;
        uint256 n = bad == 4 ? MAX_TIERS + 1 : (bad == 5 ? 0 : 1 + seed % MAX_TIERS);
        ICoalitionPoints.Tier[] memory table = new ICoalitionPoints.Tier[](n);
        uint32[6] memory multipliers = [uint32(1), 5_000, 10_000, 12_500, 20_000, 1_000_000];
        for (uint256 i = 0; i < n; ++i) {
            uint256 bits = seed >> (16 * (i % 12));
            table[i] = i == 0
                ? ICoalitionPoints.Tier(0, uint32(BPS))
                : ICoalitionPoints.Tier(table[i - 1].threshold + 1 + uint64(bits % 2_000), multipliers[(bits >> 11) % 6]);
        }
        if (n != 0 && bad == 0) table[n - 1].multiplierBps = 0;
        if (n != 0 && bad == 1) table[0].threshold = 1;
        if (n > 1 && bad == 2) table[n - 1].threshold = table[n - 2].threshold;
        if (n != 0 && bad == 3) table[n - 1].multiplierBps = 1_000_001;
        _scheduleTiers(table, who);
    }

    function setPointValue(uint256 value, uint256 who) external recorded {
        value = _bound(value, 0, 10 ** 6);
        bytes3 currency = value % 2 == 0 ? bytes3("EUR") : bytes3("USD");
        if (_operatorCall(who, abi.encodeCall(ILedger.setPointValue, (value, currency)), 0)) {
            _expectChangeId(_recordChange(CHANGE_POINT_VALUE, 0, value, uint24(currency)));
        }
    }

    /// @notice Schedules an earn rate (a zero one and an unknown partner refused).
    function setPartnerRate(uint256 partnerSeed, uint256 rateSeed, uint256 who) external recorded {
        uint32 pid = _pid(partnerSeed);
        (uint32 rp, uint32 rpm) = _rate(rateSeed);
        if (rateSeed % 9 == 8) rp = 0;
        if (rateSeed % 9 == 7) rpm = 0;
        bytes4 expected = _partners[pid].key == 0
            ? ICoalitionPoints.UnknownPartner.selector
            : (rp == 0 || rpm == 0 ? ICoalitionPoints.InvalidRate.selector : bytes4(0));
        if (_operatorCall(who, abi.encodeCall(ILedger.setPartnerRate, (pid, rp, rpm)), expected)) {
            _expectChangeId(_recordChange(CHANGE_RATE, pid, rp, rpm));
        }
    }

    function setPartnerPrices(uint256 partnerSeed, uint256 issuePrice, uint256 redemptionPrice, uint256 who) external recorded {
        uint32 pid = _pid(partnerSeed);
        issuePrice = issuePrice % 5 == 0 ? type(uint128).max : _bound(issuePrice, 0, 10 ** 6);
        redemptionPrice = _bound(redemptionPrice, 0, 10 ** 6);
        bytes4 expected = _partners[pid].key == 0 ? ICoalitionPoints.UnknownPartner.selector : bytes4(0);
        bytes memory call = abi.encodeCall(ILedger.setPartnerPrices, (pid, uint128(issuePrice), uint128(redemptionPrice)));
        if (_operatorCall(who, call, expected)) {
            _expectChangeId(_recordChange(CHANGE_PRICES, pid, issuePrice, redemptionPrice));
        }
    }

    /// @notice The lost-key path: the operator schedules a new signer (zero signer and unknown
    /// partner refused).
    function requestSignerChange(uint256 partnerSeed, bool zero, uint256 who) external recorded {
        uint32 pid = _pid(partnerSeed);
        uint256 key = _newKey("requested signer");
        address signer = zero ? address(0) : vm.addr(key);
        bytes4 expected = _partners[pid].key == 0
            ? ICoalitionPoints.UnknownPartner.selector
            : (zero ? ICoalitionPoints.InvalidSigner.selector : bytes4(0));
        if (_operatorCall(who, abi.encodeCall(ILedger.requestSignerChange, (pid, signer)), expected)) {
            _expectChangeId(_recordChange(CHANGE_SIGNER, pid, key, 0));
        }
    }

    /// @notice applyChange by anyone: now (ChangeNotDue while the notice runs), after warping
    /// to its effective time (applied), one second before it (ChangeNotDue), an unknown,
    /// applied or cancelled id (UnknownChange).
    function applyChange(uint256 idSeed, uint256 mode, uint256 callerSeed) external recorded {
        uint256 id = _changeId(idSeed, 0);
        GhostChange storage c = _changes[id];
        mode %= 3;
        if (c.state == 1 && ghostTime < c.effectiveAt && mode != 0) {
            uint256 at = mode == 1 ? c.effectiveAt + _bound(callerSeed >> 8, 0, 2 days) : c.effectiveAt - 1;
            if (at > ghostTime) _warpToTime(at);
        }
        bytes4 expected = c.state != 1
            ? ICoalitionPoints.UnknownChange.selector
            : (ghostTime < c.effectiveAt ? ICoalitionPoints.ChangeNotDue.selector : bytes4(0));
        address caller = callerSeed % 3 == 0 ? stranger : _actor(callerSeed);
        if (_call(caller, abi.encodeCall(ILedger.applyChange, (id)), expected)) _applyChange(id);
    }

    /// @notice The operator withdraws a pending change (an unknown, applied or cancelled one: UnknownChange).
    function cancelChange(uint256 idSeed, uint256 who) external recorded {
        uint256 id = _changeId(idSeed, 0);
        bytes4 expected = _changes[id].state != 1 ? ICoalitionPoints.UnknownChange.selector : bytes4(0);
        if (_operatorCall(who, abi.encodeCall(ILedger.cancelChange, (id)), expected)) _changes[id].state = 3;
    }

    /// @notice The partner's current key withdraws a pending signer request; the requested key,
    /// a retired key or a stranger's cannot (InvalidSignature); another kind of change or one
    /// no longer pending: UnknownChange.
    function cancelSignerChange(uint256 idSeed, uint256 variant, uint256 callerSeed) external recorded {
        uint256 id = _changeId(idSeed, CHANGE_SIGNER);
        GhostChange storage c = _changes[id];
        GhostPartner storage p = _partners[c.partnerId];
        variant %= 4;
        uint256 key = variant == 0 || variant == 3 ? p.key : (variant == 1 ? c.a : p.retiredKey);
        if (key == 0) key = BAD_KEY;
        (bytes32 r, bytes32 vs) = _sign(key, keccak256(abi.encode(CANCEL_CHANGE_TYPEHASH, c.partnerId, id)));
        bytes4 expected = c.state != 1 || c.kind != CHANGE_SIGNER
            ? ICoalitionPoints.UnknownChange.selector
            : (key != p.key ? ICoalitionPoints.InvalidSignature.selector : bytes4(0));
        address caller = callerSeed % 2 == 0 ? stranger : _actor(callerSeed);
        if (_call(caller, abi.encodeCall(ILedger.cancelSignerChange, (id, r, vs)), expected)) c.state = 3;
    }

    /// @notice Signer rotation with the current key's signature, submitted by anyone. Refused:
    /// signed by the new key, a retired key or a stranger (InvalidSignature), a replay
    /// (NonceAlreadyUsed), a past deadline (SignatureExpired), a zero new signer
    /// (InvalidSigner), an unknown partner.
    function rotateSigner(uint256 partnerSeed, uint256 variant, uint256 callerSeed) external recorded {
        variant %= 8;
        RotateCall memory c;
        uint256 key;
        uint256 newKey;
        if (variant == 7 && _lastRotate.deadline != 0) {
            (c, key, newKey) = (_lastRotate, _lastRotateKey, _lastRotateNewKey);
        } else {
            newKey = _newKey("rotated signer");
            uint32 pid = _pid(partnerSeed);
            GhostPartner storage p = _partners[pid];
            key = p.key;
            if (variant == 3) key = newKey;
            if (variant == 4) key = p.retiredKey;
            if (variant == 5 || key == 0) key = BAD_KEY;
            c = RotateCall(pid, variant == 6 ? address(0) : vm.addr(newKey), _opNonce(partnerSeed), 0, 0, 0);
            c.deadline = variant == 2 ? ghostTime - 1 : ghostTime + _bound(callerSeed >> 8, 0, 30 days);
            (c.r, c.vs) =
                _sign(key, keccak256(abi.encode(ROTATE_SIGNER_TYPEHASH, c.partnerId, c.newSigner, c.nonce, c.deadline)));
        }
        bytes4 expected = _rotateError(c, key);
        bytes memory call =
            abi.encodeCall(ILedger.rotateSigner, (c.partnerId, c.newSigner, c.nonce, c.deadline, c.r, c.vs));
        if (_call(callerSeed % 2 == 0 ? stranger : _actor(callerSeed), call, expected)) {
            GhostPartner storage q = _partners[c.partnerId];
            _partnerNonceUsed[c.partnerId][c.nonce] = true;
            (q.retiredKey, q.key, q.signer) = (q.key, newKey, c.newSigner);
            (_lastRotate, _lastRotateKey, _lastRotateNewKey) = (c, key, newKey);
        }
    }

    /// @notice migrate by anyone with `from`'s signature into a fresh address (its points,
    /// expiry months, qualifying window and assigned tier move). Refused: into an address in
    /// use (AccountInUse), to itself or to 0 (InvalidMember), a wrong key, a replay, a past
    /// deadline, while paused.
    function migrate(uint256 fromSeed, uint256 toSeed, uint256 variant) external recorded {
        variant %= 8;
        MigrateCall memory c;
        uint256 key;
        if (variant == 7 && _lastMigrate.deadline != 0) {
            c = _lastMigrate;
            key = _keyOf(c.from);
        } else {
            address from = _actor(fromSeed);
            address to = _freshActor(toSeed, from);
            if (variant == 3) to = from;
            if (variant == 4) to = address(0);
            if (variant == 5) to = _actor(toSeed); // maybe in use
            key = variant == 6 ? BAD_KEY : _keyOf(from);
            c = MigrateCall(from, to, _opNonce(fromSeed), variant == 2 ? ghostTime - 1 : ghostTime + 1 days, 0, 0);
            (c.r, c.vs) = _sign(key, keccak256(abi.encode(MIGRATE_TYPEHASH, c.from, c.to, c.nonce, c.deadline)));
        }
        bytes4 expected;
        if (ghostPaused) expected = ILedger.EnforcedPause.selector;
        else if (c.to == address(0) || c.to == c.from) expected = ICoalitionPoints.InvalidMember.selector;
        else if (_inUse(c.to)) expected = ICoalitionPoints.AccountInUse.selector;
        else if (_holder(c.from) != c.from) expected = ICoalitionPoints.InvalidMember.selector;
        else if (ghostTime > c.deadline) expected = ICoalitionPoints.SignatureExpired.selector;
        else if (_memberNonceUsed[c.from][c.nonce]) expected = ICoalitionPoints.NonceAlreadyUsed.selector;
        else if (vm.addr(key) != c.from) expected = ICoalitionPoints.InvalidSignature.selector;
        bytes memory call = abi.encodeCall(ILedger.migrate, (c.from, c.to, c.nonce, c.deadline, c.r, c.vs));
        if (_call(fromSeed % 2 == 0 ? stranger : _actor(toSeed >> 8), call, expected)) {
            _memberNonceUsed[c.from][c.nonce] = true;
            _migrate(c.from, c.to);
            _lastMigrate = c;
        }
    }

    // ================================================================ default admin (OpenZeppelin)

    function beginDefaultAdminTransfer(uint256 who) external recorded {
        bytes memory call = abi.encodeCall(ILedger.beginDefaultAdminTransfer, (operators[1 - adminIndex]));
        if (_operatorCall(who, call, 0)) (hasPending, pendingIndex) = (true, 1 - adminIndex);
    }

    function cancelDefaultAdminTransfer(uint256 who) external recorded {
        if (_operatorCall(who, abi.encodeCall(ILedger.cancelDefaultAdminTransfer, ()), 0)) hasPending = false;
    }

    /// @notice Accepted only by the pending admin once the delay (3 days) has passed.
    function acceptDefaultAdminTransfer(bool byPending) external recorded {
        uint256 by = byPending && hasPending ? pendingIndex : 1 - adminIndex;
        bytes4 expected;
        if (!hasPending || by != pendingIndex) {
            expected = ILedger.AccessControlInvalidDefaultAdmin.selector;
        } else {
            (, uint48 schedule) = ledger.pendingDefaultAdmin();
            if (block.timestamp <= schedule) expected = ILedger.AccessControlEnforcedDefaultAdminDelay.selector;
        }
        if (_call(operators[by], abi.encodeCall(ILedger.acceptDefaultAdminTransfer, ()), expected)) {
            (adminIndex, hasPending) = (by, false);
        }
    }

    /// @notice The rest of OpenZeppelin's admin surface. The default admin role moves only by
    /// the two-step handover (granting or revoking it: AccessControlEnforcedDefaultAdminRules);
    /// another role can be granted, revoked and renounced (the ledger checks none, so nothing
    /// else changes); renouncing for another account is refused; the handover delay can be
    /// changed (0 to 5 days) and the change rolled back.
    function adminRoles(uint256 seed, uint256 who) external recorded {
        bytes32 role = keccak256("SOME_ROLE");
        address member = _actor(seed >> 8);
        uint256 kind = seed % 8;
        address sender = _isStranger(who) ? stranger : operators[adminIndex];
        if (kind == 0) {
            bytes memory call = abi.encodeCall(ILedger.grantRole, (bytes32(0), member));
            _call(sender, call, ILedger.AccessControlEnforcedDefaultAdminRules.selector);
        } else if (kind == 1) {
            bytes memory call = abi.encodeCall(ILedger.revokeRole, (bytes32(0), operators[adminIndex]));
            _call(sender, call, ILedger.AccessControlEnforcedDefaultAdminRules.selector);
        } else if (kind == 2) {
            if (_operatorCall(who, abi.encodeCall(ILedger.grantRole, (role, member)), 0)) {
                require(ledger.hasRole(role, member), "grantRole: not granted");
            }
        } else if (kind == 3) {
            if (_operatorCall(who, abi.encodeCall(ILedger.revokeRole, (role, member)), 0)) {
                require(!ledger.hasRole(role, member), "revokeRole: not revoked");
            }
        } else if (kind == 4) {
            _call(member, abi.encodeCall(ILedger.renounceRole, (role, member)), 0);
            require(!ledger.hasRole(role, member), "renounceRole: not renounced");
        } else if (kind == 5) {
            _call(member, abi.encodeCall(ILedger.renounceRole, (role, stranger)), ILedger.AccessControlBadConfirmation.selector);
        } else if (kind == 6) {
            uint48 delay = uint48(_bound(seed >> 16, 0, 5 days));
            _operatorCall(who, abi.encodeCall(ILedger.changeDefaultAdminDelay, (delay)), 0);
        } else {
            _operatorCall(who, abi.encodeCall(ILedger.rollbackDefaultAdminDelay, ()), 0);
        }
    }

    // ================================================================ time

    /// @notice Moves the clock: one month mostly, up to six years now and then, a few days or
    /// seconds (inside a notice period), or to either side of a month's end (expiry's edge).
    function warp(uint256 seed) external recorded {
        uint256 kind = seed % 8;
        if (kind <= 3) {
            uint256 months = kind == 0
                ? 1
                : (kind == 1 ? _bound(seed >> 8, 1, 3) : (kind == 2 ? _bound(seed >> 8, 4, 14) : _bound(seed >> 8, 15, 72)));
            _warpToMonth(ghostMonth + months);
        } else if (kind <= 5) {
            _warpToTime(ghostTime + _bound(seed >> 8, 1, 10 days));
        } else {
            _warpToTime(_monthStart(ghostMonth + 1) - (kind == 6 ? 1 : 0));
        }
    }

    // ================================================================ internals: picking operations

    function _pickEarn(uint256 s) internal returns (ICoalitionPoints.EarnOp memory op, uint256 key) {
        uint256 variant = s % 32;
        if (variant == 22 && _lastEarn.deadline != 0) return (_lastEarn, _lastEarnKey); // replay
        if (variant >= 23 && variant <= 24 && _held.length != 0) {
            uint256 i = (s >> 8) % _held.length;
            (op, key) = (_held[i].op, _held[i].key);
            _held[i] = _held[_held.length - 1];
            _held.pop();
            return (op, key);
        }
        uint32 pid = _pid(s >> 8);
        key = _earnKey(pid, variant);
        uint256 spend = _bound(s >> 24, 1, 300_000);
        if (variant == 17) spend = _bound(s >> 24, 1, 99); // ZeroPoints at a rate of 1 per 100
        if (variant == 18) spend = (s >> 24) % 2 == 0 ? 0 : MAX_SPEND + 1;
        if (variant == 26) spend = _bound(s >> 24, 10 ** 9, MAX_SPEND);
        // (r2) One earn in three names a campaign: mostly one of the partner's own (3 in 4),
        // else any id, another partner's or unknown (UnknownCampaign).
        uint64 cid;
        (cid, pid, key) = _pickCampaign(s, pid, key, variant);
        op = _earnOp(
            pid,
            variant == 25 ? address(0) : _actor(s >> 16),
            spend,
            type(uint256).max,
            variant == 27 ? ghostTime - 1 : ghostTime + _bound(s >> 96, 0, 30 days),
            key
        );
        op.campaignId = cid; // the ghost's answer needs no signature
        (, uint256 points,) = _checkEarn(op, key);
        uint256 m = (s >> 128) % 4;
        op.maxPoints = m == 0 ? points : (m == 1 ? type(uint256).max : points + (s >> 136) % 1_000);
        if (variant == 28) op.maxPoints = points == 0 ? 0 : points - 1; // MaxPointsExceeded (the bonus included)
        _signEarn(op, key, cid != 0 && variant == 29);
    }

    function _earnKey(uint32 pid, uint256 variant) internal view returns (uint256 key) {
        GhostPartner storage p = _partners[pid];
        key = p.key == 0 ? BAD_KEY : p.key;
        if (variant == 19) key = BAD_KEY;
        if (variant == 20 && p.retiredKey != 0) key = p.retiredKey;
        if (variant == 21) key = _pendingSignerKey(pid);
    }

    /// @dev (r2) One earn in three names a campaign: mostly one of the partner's own (3 in 4,
    /// for a valid variant), else any id, another partner's or unknown (UnknownCampaign).
    function _pickCampaign(uint256 s, uint32 pid, uint256 key, uint256 variant)
        internal
        view
        returns (uint64 cid, uint32, uint256)
    {
        uint256 count = _ghostCampaigns.length;
        if (count == 0 || (s >> 160) % 3 != 0) return (0, pid, key);
        cid = uint64(1 + (s >> 164) % (count + 1));
        if ((s >> 172) % 4 != 0 && cid <= count && variant < 17) {
            pid = _ghostCampaigns[cid - 1].terms.partnerId;
            key = _partners[pid].key;
        }
        return (cid, pid, key);
    }

    /// @dev Signs the earn: as `CampaignEarn` when it names a campaign, else as `Earn`; with
    /// `plain`, an earn naming a campaign signed as an `Earn` without it, which does not cover
    /// it (InvalidSignature).
    function _signEarn(ICoalitionPoints.EarnOp memory op, uint256 key, bool plain) internal {
        if (op.campaignId == 0 || plain) {
            if (plain) _forged[op.receiptRef] = true;
            (op.r, op.vs) = _sign(
                key,
                keccak256(
                    abi.encode(EARN_TYPEHASH, op.partnerId, op.member, op.spend, op.maxPoints, op.receiptRef, op.nonce, op.deadline)
                )
            );
            return;
        }
        (op.r, op.vs) = _sign(
            key,
            keccak256(
                abi.encode(
                    CAMPAIGN_EARN_TYPEHASH,
                    op.partnerId,
                    op.member,
                    op.spend,
                    op.maxPoints,
                    op.campaignId,
                    op.receiptRef,
                    op.nonce,
                    op.deadline
                )
            )
        );
    }

    function _earnOp(uint32 pid, address member, uint256 spend, uint256 maxPoints, uint256 deadline, uint256 key)
        internal
        returns (ICoalitionPoints.EarnOp memory op)
    {
        op = ICoalitionPoints.EarnOp(
            pid, member, spend, maxPoints, 0, keccak256(abi.encode("receipt", ++_nonce)), _opNonce(_nonce), deadline, 0, 0
        );
        (op.r, op.vs) = _sign(
            key,
            keccak256(
                abi.encode(EARN_TYPEHASH, op.partnerId, op.member, op.spend, op.maxPoints, op.receiptRef, op.nonce, op.deadline)
            )
        );
    }

    function _submitEarns(ICoalitionPoints.EarnOp[] memory ops, uint256[] memory keys) internal {
        if (_pausedCall(abi.encodeCall(ILedger.earnBatch, (ops)))) return;
        uint256 size = ops.length;
        bytes4[] memory errs = new bytes4[](size);
        uint256[] memory points = new uint256[](size);
        uint24[] memory expiries = new uint24[](size);
        delete _expectedBonus;
        for (uint256 i = 0; i < size; ++i) {
            uint256 bonus;
            (errs[i], points[i], bonus) = _checkEarn(ops[i], keys[i]);
            if (errs[i] == 0) _applyEarn(ops[i], points[i], bonus);
            _expectedBonus.push(errs[i] == 0 ? bonus : 0);
            expiries[i] = _expiryFor();
        }
        uint256 accepted = ledger.earnBatch(ops);
        Vm.Log[] memory logs = _checkRejections(KIND_EARN, errs, accepted);
        bytes32[] memory leaves = new bytes32[](size);
        uint256 n;
        uint32[] memory pids = new uint32[](size);
        for (uint256 i = 0; i < size; ++i) {
            pids[i] = ops[i].partnerId;
            if (errs[i] != 0) continue;
            ICoalitionPoints.EarnOp memory op = ops[i];
            _earns.push(
                GhostEarn(op.partnerId, ghostBatchCount + 1, uint8(n), op.member, op.receiptRef, op.spend, points[i], ghostMonth, expiries[i], _expectedBonus[i])
            );
            leaves[n++] = _leaf(_earns[_earns.length - 1]);
            (_lastEarn, _lastEarnKey) = (op, keys[i]);
        }
        _commitBatch(leaves, n);
        _checkIssued(KIND_EARN, logs, EARNED_EVENT, pids, keys, points, errs);
    }

    function _commitBatch(bytes32[] memory leaves, uint256 n) internal {
        if (n == 0) return;
        uint64 batchId = ++ghostBatchCount;
        require(ledger.earnBatchCount() == batchId, "batch count differs from the ghost");
        for (uint256 i = 0; i < n; ++i) {
            _batchLeaves[batchId].push(leaves[i]);
        }
    }

    function _pickRedeem(uint256 s) internal returns (ICoalitionPoints.RedeemOp memory op, uint256 key) {
        uint256 variant = s % 20;
        if (variant == 11 && _lastRedeem.deadline != 0) return (_lastRedeem, _lastRedeemKey);
        uint256 i = (s >> 8) % ACTORS;
        uint32 pid = _pid(s >> 16);
        uint256 balance = ghostBalance(actors[i]);
        uint256 points = _bound(s >> 24, 1, balance + 3);
        if (variant == 6) points = balance;
        if (variant == 7) points = (s >> 24) % 2 == 0 ? 0 : MAX_OP_POINTS + 1;
        key = variant == 8 ? BAD_KEY : _actorKeys[i];
        op = ICoalitionPoints.RedeemOp(
            variant == 9 ? address(0) : actors[i],
            pid,
            points,
            keccak256(abi.encode("redeem", ++_nonce)),
            _opNonce(s >> 32),
            variant == 10 ? ghostTime - 1 : ghostTime + _bound(s >> 96, 0, 30 days),
            0,
            0
        );
        (op.r, op.vs) = _sign(
            key, keccak256(abi.encode(REDEEM_TYPEHASH, op.member, op.partnerId, op.points, op.receiptRef, op.nonce, op.deadline))
        );
    }

    function _pickReverse(uint256 s)
        internal
        returns (ICoalitionPoints.ReverseOp memory op, uint256 key, uint256 which)
    {
        uint256 variant = s % 18;
        if (variant == 13 && _lastReverse.deadline != 0) return (_lastReverse, _lastReverseKey, _lastReverseEarn);
        // Mostly recent earns (reversible), now and then any (maybe expired).
        which = variant % 3 == 0 ? (s >> 8) % _earns.length : _earns.length - 1 - (s >> 8) % (_earns.length < 6 ? _earns.length : 6);
        GhostEarn memory e = _earns[which];
        uint256 left = e.points - ghostReversedOf[_leaf(e)];
        uint256 points = _bound(s >> 24, 1, left == 0 ? 1 : left);
        if (variant == 7) points = left + 1; // over the cap
        if (variant == 8) points = 0;
        uint32 pid = e.partnerId;
        if (variant == 9) pid = uint32(pid % (ghostPartnerCount + 1) + 1); // another partner, maybe unknown
        key = _partners[pid].key == 0 ? BAD_KEY : _partners[pid].key;
        if (variant == 10) key = _partners[pid].retiredKey == 0 ? BAD_KEY : _partners[pid].retiredKey;
        ICoalitionPoints.EarnRecord memory r = ICoalitionPoints.EarnRecord(
            e.batchId, e.member, e.receiptRef, e.spend, e.points, e.earnMonth, _proof(e.batchId, e.index), e.bonus
        );
        if (variant == 14 && e.bonus != 0) r.bonus = 0; // (r2) a record hiding its bonus: UnknownEarn
        if (variant == 11) r.points = e.points + 1 + (s >> 40) % 100; // a forged record
        if (variant == 12) r.batchId = (s >> 40) % 2 == 0 ? ghostBatchCount + 1 : e.batchId % ghostBatchCount + 1;
        op.partnerId = pid;
        op.points = points;
        op.receiptRef = keccak256(abi.encode("refund", ++_nonce));
        op.nonce = _opNonce(s >> 48);
        op.deadline = variant == 6 ? ghostTime - 1 : ghostTime + _bound(s >> 96, 0, 30 days);
        op.earn = r;
        _signReverse(op, key);
    }

    function _pickRefund(uint256 s) internal returns (ICoalitionPoints.RefundOp memory op, uint256 key, uint256 which) {
        uint256 variant = s % 18;
        if (variant == 13 && _lastRefund.deadline != 0) return (_lastRefund, _lastRefundKey, _lastRefundOf);
        // Mostly recent redemptions, now and then any (its burnt points maybe expired since).
        uint256 count = _redemptions.length;
        which = variant % 3 == 0 ? (s >> 8) % count : count - 1 - (s >> 8) % (count < 6 ? count : 6);
        GhostRedemption memory g = _redemptions[which];
        uint256 left = g.points - ghostRefundedOf[_redemptionLeaf(g)];
        uint256 points = _bound(s >> 24, 1, left == 0 ? 1 : left);
        if (variant == 7) points = left + 1; // over the cap
        if (variant == 8) points = (s >> 24) % 2 == 0 ? 0 : MAX_OP_POINTS + 1;
        uint32 pid = g.partnerId;
        if (variant == 9) pid = uint32(pid % (ghostPartnerCount + 1) + 1); // another partner, maybe unknown
        key = _partners[pid].key == 0 ? BAD_KEY : _partners[pid].key;
        if (variant == 10) key = _partners[pid].retiredKey == 0 ? BAD_KEY : _partners[pid].retiredKey;
        if (variant == 14) key = BAD_KEY;
        ICoalitionPoints.RedemptionRecord memory r = ICoalitionPoints.RedemptionRecord(
            g.batchId, g.index, g.member, g.receiptRef, g.points, g.expiry, _proofIn(_redeemLeaves[g.batchId], g.index)
        );
        if (variant == 11) r.points = g.points + 1 + (s >> 40) % 100; // a forged record
        if (variant == 12) r.batchId = (s >> 40) % 2 == 0 ? ghostRedeemBatchCount + 1 : g.batchId % ghostRedeemBatchCount + 1;
        if (variant == 15) r.expiryMonth = g.expiry == NEVER ? ghostMonth : g.expiry + 1; // a later expiry claimed
        op.partnerId = pid;
        op.points = points;
        op.receiptRef = keccak256(abi.encode("return", ++_nonce));
        op.nonce = _opNonce(s >> 48);
        op.deadline = variant == 6 ? ghostTime - 1 : ghostTime + _bound(s >> 96, 0, 30 days);
        op.redemption = r;
        _signRefund(op, key);
    }

    function _signRefund(ICoalitionPoints.RefundOp memory op, uint256 key) internal view {
        ICoalitionPoints.RedemptionRecord memory rd = op.redemption;
        bytes32 leaf =
            keccak256(abi.encode(op.partnerId, rd.member, rd.receiptRef, rd.points, rd.expiryMonth, rd.batchId, rd.index));
        (op.r, op.vs) = _sign(
            key, keccak256(abi.encode(REFUND_TYPEHASH, op.partnerId, leaf, op.points, op.receiptRef, op.nonce, op.deadline))
        );
    }

    function _signReverse(ICoalitionPoints.ReverseOp memory op, uint256 key) internal view {
        ICoalitionPoints.EarnRecord memory r = op.earn;
        bytes32 leaf = r.bonus == 0
            ? keccak256(abi.encode(op.partnerId, r.member, r.receiptRef, r.spend, r.points, r.earnMonth))
            : keccak256(abi.encode(op.partnerId, r.member, r.receiptRef, r.spend, r.points, r.earnMonth, r.bonus));
        (op.r, op.vs) = _sign(
            key, keccak256(abi.encode(REVERSE_TYPEHASH, op.partnerId, leaf, op.points, op.receiptRef, op.nonce, op.deadline))
        );
    }

    function _pickAward(uint256 s) internal returns (ICoalitionPoints.AwardOp memory op, uint256 key) {
        uint256 variant = s % 24;
        if (variant == 12 && _lastAward.deadline != 0) return (_lastAward, _lastAwardKey);
        uint32 pid = _pid(s >> 8);
        GhostPartner storage p = _partners[pid];
        key = p.key == 0 ? BAD_KEY : p.key;
        if (variant == 9) key = BAD_KEY;
        if (variant == 10 && p.retiredKey != 0) key = p.retiredKey;
        uint8 reason = uint8(1 + (s >> 16) % MAX_REASON);
        if (variant == 11) reason = [uint8(0), 8, 255][(s >> 16) % 3];
        uint256 points = _bound(s >> 24, 1, 5_000);
        if (variant == 8) points = (s >> 24) % 2 == 0 ? 0 : MAX_OP_POINTS + 1;
        if (variant == 13) points = p.allowance + 1 > MAX_OP_POINTS ? MAX_OP_POINTS : p.allowance + 1;
        op = ICoalitionPoints.AwardOp(
            pid,
            variant == 15 ? address(0) : _actor(s >> 64),
            points,
            reason,
            keccak256(abi.encode("award", ++_nonce)),
            _opNonce(s >> 72),
            variant == 14 ? ghostTime - 1 : ghostTime + _bound(s >> 96, 0, 30 days),
            0,
            0
        );
        (op.r, op.vs) = _sign(
            key,
            keccak256(
                abi.encode(AWARD_TYPEHASH, op.partnerId, op.member, op.points, op.reason, op.receiptRef, op.nonce, op.deadline)
            )
        );
    }

    // ================================================================ internals: checking answers

    /// @dev The batch's `OperationRejected` events must name exactly the operations the ghost
    /// rejects, each with the ghost's reason; returns the logs for the issuance check.
    function _checkRejections(uint8 kind, bytes4[] memory errs, uint256 accepted) internal returns (Vm.Log[] memory logs) {
        logs = _logs();
        uint256 seen;
        uint256 expectedAccepted;
        for (uint256 i = 0; i < errs.length; ++i) {
            if (errs[i] == 0) ++expectedAccepted;
            else ++refused[_batchSelector(kind)][errs[i]];
        }
        for (uint256 j = 0; j < logs.length; ++j) {
            Vm.Log memory log = logs[j];
            if (log.emitter != address(ledger) || log.topics[0] != REJECTED_EVENT) continue;
            require(uint256(log.topics[1]) == kind, "a rejection of another kind");
            (uint256 index, bytes memory reason) = abi.decode(log.data, (uint256, bytes));
            if (index >= errs.length || errs[index] == 0 || bytes4(reason) != errs[index] || seen & (1 << index) != 0) {
                bytes4 expected = index < errs.length ? errs[index] : bytes4(0);
                revert OperationDiffers(_batchName(kind), index, _errorName(expected), _errorName(bytes4(reason)), reason);
            }
            seen |= 1 << index;
        }
        for (uint256 i = 0; i < errs.length; ++i) {
            if (errs[i] != 0 && seen & (1 << i) == 0) {
                revert OperationDiffers(_batchName(kind), i, _errorName(errs[i]), "accepted", "");
            }
        }
        require(accepted == expectedAccepted, "accepted count differs from the ghost");
        applied[_batchSelector(kind)] += accepted;
    }

    function _batchSelector(uint8 kind) internal pure returns (bytes4) {
        if (kind == KIND_EARN) return ILedger.earnBatch.selector;
        if (kind == KIND_REDEEM) return ILedger.redeemBatch.selector;
        if (kind == KIND_REVERSE) return ILedger.reverseBatch.selector;
        if (kind == KIND_REFUND) return ILedger.refundBatch.selector;
        return ILedger.awardBatch.selector;
    }

    /// @dev Each `Earned`/`Awarded` event of the batch, in order, is one of the operations the
    /// ghost accepted with the ghost's points and expiry; its points count as issued with the
    /// partner's current key, or, if the handler signed it with any other key, as forged.
    function _checkIssued(
        uint8 kind,
        Vm.Log[] memory logs,
        bytes32 topic,
        uint32[] memory pids,
        uint256[] memory keys,
        uint256[] memory points,
        bytes4[] memory errs
    ) internal {
        uint256 next;
        for (uint256 j = 0; j < logs.length; ++j) {
            Vm.Log memory log = logs[j];
            if (log.emitter != address(ledger) || log.topics[0] != topic) continue;
            while (next < errs.length && errs[next] != 0) ++next;
            uint32 pid = uint32(uint256(log.topics[1]));
            uint256 issued;
            uint256 expiry;
            uint256 bonus;
            if (kind == KIND_EARN) {
                (, issued, expiry,, bonus) = abi.decode(log.data, (uint256, uint256, uint32, uint64, uint256));
            } else {
                (issued,, expiry) = abi.decode(log.data, (uint256, uint8, uint32));
            }
            if (
                next >= errs.length || pid != pids[next] || issued != points[next] || expiry != _expiryFor()
                    || bonus != (next < _expectedBonus.length ? _expectedBonus[next] : 0)
            ) {
                revert IssuedDiffers(kind, next, next < errs.length ? points[next] : 0, issued, expiry);
            }
            if (keys[next] == _partners[pid].key) ghostSignedIssued[pid] += issued;
            else ghostForgedIssued[pid] += issued;
            ++next;
        }
    }

    function _partnerIds(ICoalitionPoints.AwardOp[] memory ops) internal pure returns (uint32[] memory pids) {
        pids = new uint32[](ops.length);
        for (uint256 i = 0; i < ops.length; ++i) {
            pids[i] = ops[i].partnerId;
        }
    }

    function _rotateError(RotateCall memory c, uint256 key) internal view returns (bytes4) {
        GhostPartner storage p = _partners[c.partnerId];
        if (p.key == 0) return ICoalitionPoints.UnknownPartner.selector;
        if (c.newSigner == address(0)) return ICoalitionPoints.InvalidSigner.selector;
        if (ghostTime > c.deadline) return ICoalitionPoints.SignatureExpired.selector;
        if (_partnerNonceUsed[c.partnerId][c.nonce]) return ICoalitionPoints.NonceAlreadyUsed.selector;
        if (key != p.key) return ICoalitionPoints.InvalidSignature.selector;
        return 0;
    }

    function _transferError(address from, uint256 amount) internal view returns (bytes4) {
        if (ghostPaused) return ILedger.EnforcedPause.selector;
        if (!ghostTransfers) return ICoalitionPoints.TransfersDisabled.selector;
        if (ghostBalance(from) < amount) return ILedger.ERC20InsufficientBalance.selector;
        return 0;
    }

    // ================================================================ internals: calls

    function _addPartner(uint32 rp, uint32 rpm, uint256 allowance) internal {
        uint32 pid = ghostPartnerCount + 1;
        uint256 key = _newKey("partner");
        vm.prank(operators[adminIndex]);
        require(ledger.addPartner(vm.addr(key), rp, rpm, "EUR", uint128(allowance)) == pid, "partner id");
        GhostPartner storage p = _partners[pid];
        (p.key, p.signer, p.active, p.ratePoints, p.ratePerMinorUnits) = (key, vm.addr(key), true, rp, rpm);
        p.allowance = allowance;
        p.activeFrom = ghostTime + NOTICE;
        ghostAllowedTotal[pid] = allowance;
        ghostPartnerCount = pid;
        ++applied[ILedger.addPartner.selector];
    }

    function _scheduleTiers(ICoalitionPoints.Tier[] memory table, uint256 who) internal {
        bool bad = table.length == 0 || table.length > MAX_TIERS || table[0].threshold != 0;
        for (uint256 i = 0; i < table.length; ++i) {
            if (table[i].multiplierBps == 0 || table[i].multiplierBps > 100 * BPS) bad = true;
            if (i != 0 && table[i].threshold <= table[i - 1].threshold) bad = true;
        }
        bytes4 expected = bad ? ICoalitionPoints.InvalidTierTable.selector : bytes4(0);
        if (_operatorCall(who, abi.encodeCall(ILedger.setTiers, (table)), expected)) {
            uint256 id = ghostChangeCount + 1;
            for (uint256 i = 0; i < table.length; ++i) {
                _changeTiers[id].push(table[i]);
            }
            _expectChangeId(_recordChange(CHANGE_TIERS, 0, 0, 0));
        }
    }

    /// @dev The scheduling call just made returned the ghost's next change id.
    function _expectChangeId(uint256 id) internal view {
        require(ledger.changeCount() == id, "change id differs from the ghost");
    }

    /// @dev An operator function from the admin, or (refused) from a stranger one call in five.
    function _operatorCall(uint256 who, bytes memory call, bytes4 expected) internal returns (bool) {
        if (_isStranger(who)) expected = ILedger.AccessControlUnauthorizedAccount.selector;
        return _call(_isStranger(who) ? stranger : operators[adminIndex], call, expected);
    }

    /// @dev Sends `call` from `sender`; if the ghost expects a refusal it must revert with
    /// `expected`, else any revert fails the run with the ledger's own error. Returns whether
    /// the call was applied.
    function _call(address sender, bytes memory call, bytes4 expected) internal returns (bool) {
        _logs(); // replay what earlier calls emitted: forge also records the events of a call that reverts
        vm.prank(sender);
        (bool ok, bytes memory err) = address(ledger).call(call);
        if (!ok) vm.getRecordedLogs(); // dropped: a reverted call emitted nothing
        if (expected == 0) {
            if (!ok) {
                assembly ("memory-safe") {
                    revert(add(err, 0x20), mload(err)) // the ledger's own error, for the log
                }
            }
        } else if (ok || bytes4(err) != expected) {
            revert CallDiffers(_callName(bytes4(call)), _errorName(expected), ok ? "succeeded" : _errorName(bytes4(err)), err);
        }
        if (ok) ++applied[bytes4(call)];
        else ++refused[bytes4(call)][expected];
        return ok;
    }

    /// @dev While paused, a batch (or the sweep) must revert whole with EnforcedPause: sends
    /// `call` then and returns true.
    function _pausedCall(bytes memory call) internal returns (bool) {
        if (!ghostPaused) return false;
        _logs();
        (bool ok, bytes memory err) = address(ledger).call(call);
        if (!ok) vm.getRecordedLogs(); // dropped: a reverted call emitted nothing
        if (ok || bytes4(err) != ILedger.EnforcedPause.selector) {
            revert CallDiffers(_callName(bytes4(call)), "EnforcedPause", ok ? "succeeded" : _errorName(bytes4(err)), err);
        }
        ++refused[bytes4(call)][ILedger.EnforcedPause.selector];
        return true;
    }

    // ================================================================ internals: helpers

    function _isStranger(uint256 who) internal pure returns (bool) {
        return who % 5 == 0;
    }

    function _actor(uint256 seed) internal view returns (address) {
        return actors[seed % ACTORS];
    }

    function _keyOf(address member) internal view returns (uint256) {
        for (uint256 i = 0; i < ACTORS; ++i) {
            if (actors[i] == member) return _actorKeys[i];
        }
        return BAD_KEY;
    }

    /// @dev An actor other than `from` that is not in use, if there is one (else any other).
    function _freshActor(uint256 seed, address from) internal view returns (address) {
        for (uint256 k = 0; k < ACTORS; ++k) {
            address a = actors[(seed % ACTORS + k) % ACTORS];
            if (a != from && !_inUse(a)) return a;
        }
        return actors[(seed % (ACTORS - 1) + 1 + _indexOf(from)) % ACTORS];
    }

    function _indexOf(address member) internal view returns (uint256) {
        for (uint256 i = 0; i < ACTORS; ++i) {
            if (actors[i] == member) return i;
        }
        return 0;
    }

    /// @dev A partner id 1 .. count, or one in eight times count + 1 (unknown).
    function _pid(uint256 seed) internal view returns (uint32) {
        if (seed % 8 == 0) return ghostPartnerCount + 1;
        return uint32(1 + (seed >> 3) % ghostPartnerCount);
    }

    /// @dev A fresh nonce: mostly the next counter value, now and then a random word (so nonces
    /// land in many bitmap words; the ghost tracks each one, so a collision would be expected).
    function _opNonce(uint256 seed) internal returns (uint256) {
        ++_nonce;
        return seed % 4 == 0 ? uint256(keccak256(abi.encode("nonce", seed, _nonce))) : _nonce;
    }

    /// @dev The key a pending signer request for `pid` would install (not valid before it applies).
    function _pendingSignerKey(uint32 pid) internal view returns (uint256) {
        for (uint256 id = ghostChangeCount; id > 0 && id + 8 > ghostChangeCount; --id) {
            GhostChange storage c = _changes[id];
            if (c.kind == CHANGE_SIGNER && c.partnerId == pid && c.state == 1) return c.a;
        }
        return BAD_KEY;
    }

    /// @dev Change ids 1 .. count + 1; three times in four a pending one (of `kind`, if not 0)
    /// when there is one.
    function _changeId(uint256 seed, uint8 kind) internal view returns (uint256) {
        uint256 n = ghostChangeCount;
        if (seed % 4 != 0 && n != 0) {
            uint256 start = (seed >> 2) % n;
            for (uint256 k = 0; k < n; ++k) {
                uint256 id = 1 + (start + k) % n;
                GhostChange storage c = _changes[id];
                if (c.state == 1 && (kind == 0 || c.kind == kind)) return id;
            }
        }
        return 1 + (seed >> 2) % (n + 1);
    }

    function _rate(uint256 seed) internal pure returns (uint32, uint32) {
        uint32[2][6] memory table = [[uint32(1), 100], [uint32(3), 200], [uint32(5), 1], [uint32(1), 1], [uint32(7), 3], [uint32(2), 1000]];
        uint32[2] memory r = table[seed % 6];
        return (r[0], r[1]);
    }

    function _bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        return lo + x % (hi - lo + 1);
    }
}
