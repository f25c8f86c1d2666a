// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

import {LedgerBase} from "./LedgerBase.sol";
import {CalendarMonths} from "./CalendarMonths.sol";

/// @title CoalitionPointsPrograms
/// @notice The ledger's programme module (revision 2): awards with reason codes, refunds of
/// redemptions, reversals with clawback into member debt, tiers the operator assigns until a
/// date, and member migration to a new address. Reached from the
/// ledger through the operator module's fallback, by `delegatecall` on the ledger's storage;
/// its own storage is never used.
contract CoalitionPointsPrograms is LedgerBase {
    /// @notice Kind named by `OperationRejected` for a refund (r2). Declared here rather than
    /// in `LedgerBase` (beside the other kinds) so the full admin module carries no getter.
    uint8 public constant KIND_REFUND = 5;
    bytes32 public constant REFUND_TYPEHASH = keccak256(
        "Refund(uint32 partnerId,bytes32 redemptionLeaf,uint256 points,bytes32 receiptRef,uint256 nonce,uint256 deadline)"
    );

    constructor() LedgerBase("", "", msg.sender, 0) {}

    // ================================================================ awards

    /// @notice Issues each valid partner-signed award; invalid ones are skipped with
    /// `OperationRejected`. Commits the accepted awards' Merkle root (leaves with spend 0) in
    /// the earn batches' sequence, so a reversal can take an award back.
    /// @return accepted number of awards applied.
    function awardBatch(AwardOp[] calldata ops) external whenNotPaused returns (uint256 accepted) {
        uint24 cur = CalendarMonths.monthOf(block.timestamp);
        uint24 expiry = _expiryFor(cur);
        bytes32[] memory leaves = new bytes32[](ops.length);
        for (uint256 i = 0; i < ops.length; ++i) {
            bytes memory err = _award(ops[i], cur, expiry);
            if (err.length != 0) {
                emit OperationRejected(KIND_AWARD, i, ops[i].receiptRef, err);
            } else {
                AwardOp calldata op = ops[i];
                leaves[accepted++] =
                    keccak256(abi.encode(op.partnerId, op.member, op.receiptRef, uint256(0), op.points, cur));
            }
        }
        if (accepted != 0) {
            bytes32 root = _merkleRoot(leaves, accepted);
            uint64 batchId = ++_earnBatchCount;
            _earnRoots[batchId] = bytes32((uint256(root) & ~_EXPIRY_BITS) | expiry);
            emit EarnBatchCommitted(batchId, root, accepted);
        }
    }

    function _award(AwardOp calldata op, uint24 cur, uint24 expiry) private returns (bytes memory err) {
        PartnerCore memory p = _partners[op.partnerId];
        err = _checkPartner(p, op.partnerId);
        if (err.length != 0) return err;
        IssueTotals storage totals = _issueTotals[op.partnerId];
        if (block.timestamp < totals.activeFrom) {
            return abi.encodeWithSelector(PartnerNotYetActive.selector, op.partnerId, totals.activeFrom);
        }
        if (op.member == address(0)) return abi.encodeWithSelector(InvalidMember.selector, op.member);
        if (op.points == 0 || op.points > MAX_OP_POINTS) {
            return abi.encodeWithSelector(AmountOutOfRange.selector, op.points, MAX_OP_POINTS);
        }
        if (op.reason == 0 || op.reason > MAX_REASON) return abi.encodeWithSelector(InvalidReason.selector, op.reason);
        mapping(uint256 => uint256) storage nonces = _partnerNonces[op.partnerId];
        err = _checkFresh(nonces, p.signer, op.nonce, op.deadline);
        if (err.length != 0) return err;
        bytes32 structHash = keccak256(
            abi.encode(
                AWARD_TYPEHASH, op.partnerId, op.member, op.points, op.reason, op.receiptRef, op.nonce, op.deadline
            )
        );
        err = _checkSigner(structHash, op.r, op.vs, p.signer);
        if (err.length != 0) return err;
        uint256 allowance = totals.allowance;
        if (op.points > allowance) {
            return abi.encodeWithSelector(AllowanceExceeded.selector, op.partnerId, allowance, op.points);
        }
        Account memory a = _accounts[op.member];
        if (a.tailExpiry == expiry && a.tailPoints + op.points > _LANE_MAX) {
            return abi.encodeWithSelector(AmountOutOfRange.selector, op.points, _LANE_MAX - a.tailPoints);
        }

        _spendNonce(nonces, op.nonce);
        // unchecked: points <= allowance just above; `issued` is a uint88 sum of uint48 amounts.
        unchecked {
            totals.allowance = uint128(allowance - op.points);
            totals.issued += uint88(op.points);
        }
        _awarded[op.partnerId] += op.points;
        // Not qualifying points: the tier window is left as it is. A debt is paid first (r2).
        uint256 credit = op.points;
        if (a.flags & _DEBT_FLAG != 0) {
            credit = _repay(a, op.member, credit, op.partnerId, op.receiptRef);
            _accounts[op.member] = a;
        }
        if (credit != 0) _update(address(0), op.member, credit);
        emit Awarded(op.partnerId, op.member, op.receiptRef, op.points, op.reason, expiry);
    }

    // ================================================================ refunds

    /// @notice Gives points back for each valid refund of a redemption, signed by the partner
    /// at which the points were redeemed; invalid ones are skipped with `OperationRejected`.
    /// A refund is capped by its redemption's points minus what was already refunded of it;
    /// its points expire at the end of the latest month the redemption burnt, or, if that
    /// month is over, of the month a fresh earn would get. Refunded points draw no allowance
    /// (they were the member's) and are not qualifying points.
    /// @return accepted number of refunds applied.
    function refundBatch(RefundOp[] calldata ops) external whenNotPaused returns (uint256 accepted) {
        uint24 cur = CalendarMonths.monthOf(block.timestamp);
        for (uint256 i = 0; i < ops.length; ++i) {
            bytes memory err = _refund(ops[i], cur);
            if (err.length != 0) emit OperationRejected(KIND_REFUND, i, ops[i].receiptRef, err);
            else ++accepted;
        }
    }

    function _refund(RefundOp calldata op, uint24 cur) private returns (bytes memory err) {
        PartnerCore memory p = _partners[op.partnerId];
        err = _checkPartner(p, op.partnerId);
        if (err.length != 0) return err;
        if (op.points == 0 || op.points > MAX_OP_POINTS) {
            return abi.encodeWithSelector(AmountOutOfRange.selector, op.points, MAX_OP_POINTS);
        }
        mapping(uint256 => uint256) storage nonces = _partnerNonces[op.partnerId];
        err = _checkFresh(nonces, p.signer, op.nonce, op.deadline);
        if (err.length != 0) return err;
        RedemptionRecord calldata rd = op.redemption;
        // The leaf uses the refunding partner's id, so only the partner the points were
        // redeemed at can prove the redemption.
        bytes32 leaf = keccak256(
            abi.encode(op.partnerId, rd.member, rd.receiptRef, rd.points, rd.expiryMonth, rd.batchId, rd.index)
        );
        bytes32 structHash = keccak256(
            abi.encode(REFUND_TYPEHASH, op.partnerId, leaf, op.points, op.receiptRef, op.nonce, op.deadline)
        );
        err = _checkSigner(structHash, op.r, op.vs, p.signer);
        if (err.length != 0) return err;
        bytes32 root = _redeemRoots[rd.batchId];
        if (root == 0 || MerkleProof.processProof(rd.proof, leaf) != root) {
            return abi.encodeWithSelector(UnknownRedemption.selector, leaf);
        }
        uint256 done = _refundedOf[leaf];
        if (done + op.points > rd.points) {
            return abi.encodeWithSelector(RefundExceedsRedemption.selector, leaf, rd.points - done, op.points);
        }
        // No earlier than the points the redemption burnt would have expired; never points
        // that are already over (they would be breakage at once): then a fresh earn's month.
        uint24 expiry = rd.expiryMonth >= cur ? uint24(rd.expiryMonth) : _expiryFor(cur);
        // The redemption's member may have migrated since: the points go where its points are.
        address holder = _holder(rd.member);
        Account memory a = _accounts[holder];
        if (a.tailExpiry == expiry && a.tailPoints + op.points > _LANE_MAX) {
            return abi.encodeWithSelector(AmountOutOfRange.selector, op.points, _LANE_MAX - a.tailPoints);
        }

        _spendNonce(nonces, op.nonce);
        _refundedOf[leaf] = done + op.points;
        _refunded[op.partnerId] += op.points;
        // Not an issue: no allowance drawn, no qualifying points (the pause is checked above).
        // A debt is paid first (r2): the member owes the coalition points it had back here.
        uint256 credit = op.points;
        if (a.flags & _DEBT_FLAG != 0) {
            credit = _repay(a, holder, credit, op.partnerId, op.receiptRef);
            _accounts[holder] = a;
        }
        if (credit != 0) {
            _credit(holder, expiry, credit, cur);
            emit Transfer(address(0), holder, credit);
        }
        emit Refunded(op.partnerId, holder, op.receiptRef, op.points, rd.receiptRef, expiry);
    }

    /// @notice Points already refunded of the redemption with leaf `redemptionLeaf`.
    function refundedOf(bytes32 redemptionLeaf) external view returns (uint256) {
        return _refundedOf[redemptionLeaf];
    }

    /// @notice Points `partnerId` has refunded in all (r2).
    function refunded(uint32 partnerId) external view returns (uint256) {
        return _refunded[partnerId];
    }

    /// @notice Merkle root of the accepted redemptions of batch `batchId` (zero if none).
    function redeemRoot(uint64 batchId) external view returns (bytes32) {
        return _redeemRoots[batchId];
    }

    /// @notice Number of redemption batches committed so far.
    function redeemBatchCount() external view returns (uint64) {
        return _redeemBatchCount;
    }

    // ================================================================ reversals and debt

    /// @notice Takes back points of earns (or awards) for each valid partner-signed reversal;
    /// skips invalid ones. An earn whose points have expired can no longer be reversed:
    /// expired points are breakage, never also reversed. (r2) When the holder has fewer live
    /// points than the reversal takes, the operator's debt policy decides: it takes them all
    /// and records the rest as the holder's debt (`DebtRecorded`), or it rejects the reversal
    /// (`InsufficientPoints`). The balance never goes negative.
    /// @return accepted number of reversals applied.
    function reverseBatch(ReverseOp[] calldata ops) external whenNotPaused returns (uint256 accepted) {
        uint24 cur = CalendarMonths.monthOf(block.timestamp);
        for (uint256 i = 0; i < ops.length; ++i) {
            bytes memory err = _reverse(ops[i], cur);
            if (err.length != 0) emit OperationRejected(KIND_REVERSE, i, ops[i].receiptRef, err);
            else ++accepted;
        }
    }

    function _reverse(ReverseOp calldata op, uint24 cur) private returns (bytes memory err) {
        PartnerCore memory p = _partners[op.partnerId];
        err = _checkPartner(p, op.partnerId);
        if (err.length != 0) return err;
        EarnRecord calldata e = op.earn;
        if (op.points == 0 || op.points > MAX_OP_POINTS) {
            return abi.encodeWithSelector(AmountOutOfRange.selector, op.points, MAX_OP_POINTS);
        }
        mapping(uint256 => uint256) storage nonces = _partnerNonces[op.partnerId];
        err = _checkFresh(nonces, p.signer, op.nonce, op.deadline);
        if (err.length != 0) return err;
        // The leaf uses the reversing partner's id, so only the issuing partner's earns prove.
        bytes32 leaf = e.bonus == 0
            ? keccak256(abi.encode(op.partnerId, e.member, e.receiptRef, e.spend, e.points, e.earnMonth))
            : keccak256(abi.encode(op.partnerId, e.member, e.receiptRef, e.spend, e.points, e.earnMonth, e.bonus));
        bytes32 structHash = keccak256(
            abi.encode(REVERSE_TYPEHASH, op.partnerId, leaf, op.points, op.receiptRef, op.nonce, op.deadline)
        );
        err = _checkSigner(structHash, op.r, op.vs, p.signer);
        if (err.length != 0) return err;
        uint256 stored = uint256(_earnRoots[e.batchId]);
        if (stored == 0 || (uint256(MerkleProof.processProof(e.proof, leaf)) ^ stored) & ~_EXPIRY_BITS != 0) {
            return abi.encodeWithSelector(UnknownEarn.selector, leaf);
        }
        // The batch's expiry month, committed with its root (issue 10, finding 3).
        uint256 expiry = stored & _EXPIRY_BITS;
        if (expiry < cur) return abi.encodeWithSelector(EarnExpired.selector, leaf, expiry);
        uint256 done = _reversedOf[leaf];
        if (done + op.points > e.points) {
            return abi.encodeWithSelector(ReversalExceedsEarn.selector, leaf, e.points - done, op.points);
        }
        // The earn's points live where the member's migrations took them (the leaf names the
        // address they were credited to).
        address holder = _holder(e.member);
        uint256 balance = balanceOf(holder);
        uint256 shortfall;
        if (balance < op.points) {
            if (!_debtAllowed) return abi.encodeWithSelector(InsufficientPoints.selector, holder, balance, op.points);
            shortfall = op.points - balance;
        }

        _spendNonce(nonces, op.nonce);
        _reversedOf[leaf] = done + op.points;
        // An award (spend 0) never counted as qualifying points: nothing to take back there;
        // (r2) nor did a campaign bonus, which reversals take back first.
        if (e.spend != 0) {
            uint256 bonusLeft = e.bonus > done ? e.bonus - done : 0;
            if (op.points > bonusLeft) _unearn(holder, e.earnMonth, op.points - bonusLeft);
        }
        IssueTotals storage it = _issueTotals[op.partnerId];
        // A refunded purchase returns its points to the partner's prepaid block, all of them:
        // the coalition carries the member's debt (r2) and later issuance pays it back.
        uint256 restored = uint256(it.allowance) + op.points;
        it.allowance = restored > type(uint128).max ? type(uint128).max : uint128(restored);
        _burnTotals[op.partnerId].reversed += uint128(op.points);
        if (shortfall != 0) {
            _debts[holder] += shortfall;
            _totalDebt += shortfall;
            _accounts[holder].flags |= _DEBT_FLAG;
            emit DebtRecorded(op.partnerId, holder, op.receiptRef, shortfall);
        }
        if (op.points != shortfall) _burn(holder, op.points - shortfall);
        emit Reversed(op.partnerId, holder, op.receiptRef, op.points, e.receiptRef);
    }

    /// @notice Points `member` owes (r2): what reversals took beyond its points, not yet paid
    /// by points issued or refunded to it since. Never part of its balance or the supply.
    function debtOf(address member) external view returns (uint256) {
        return _debts[member];
    }

    /// @notice Points all members owe (r2): `totalSupply()` = issued - redeemed + refunded -
    /// reversed - expired + this.
    function totalDebt() external view returns (uint256) {
        return _totalDebt;
    }

    /// @notice Whether a reversal beyond the holder's points records a debt (true) or is
    /// rejected (false, the default); changed by a scheduled change (kind 7).
    function debtAllowed() external view returns (bool) {
        return _debtAllowed;
    }

    // ================================================================ assigned tiers

    /// @notice Gives `member` at least tier `tier` (index in `tiers()`) until `until` (a
    /// timestamp; 0 withdraws it): a paid or matched status. The member's tier is the higher
    /// of this and the earned one. Acts at once: it never lowers a tier.
    function assignTier(address member, uint8 tier, uint64 until) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (member == address(0)) revert InvalidMember(member);
        if (tier >= MAX_TIERS) revert InvalidTier(tier);
        Account storage a = _accounts[member];
        if (until == 0) {
            // Withdrawn: nothing of it is left to read back or to move with a migration.
            delete _assignedTiers[member];
            a.flags &= ~uint8(1);
            emit TierAssigned(member, 0, 0);
        } else {
            _assignedTiers[member] = AssignedTier(tier, until);
            a.flags |= 1;
            emit TierAssigned(member, tier, until);
        }
    }

    /// @notice The tier the operator assigned to `member` and until when (0: none).
    function assignedTier(address member) external view returns (uint8 tier, uint64 until) {
        AssignedTier memory t = _assignedTiers[member];
        return (t.tier, t.until);
    }

    // ================================================================ migration

    /// @notice Moves all of `from`'s points with their expiry months, its tier history and
    /// its assigned tier to `to`, an address that has never held points, authorized by
    /// `from`'s EIP-712 signature over `Migrate(from, to, nonce, deadline)` (a member nonce).
    /// Works while transfers are off (a custodial card moving to a wallet); anyone submits.
    function migrate(address from, address to, uint256 nonce, uint256 deadline, bytes32 r, bytes32 vs)
        external
        whenNotPaused
    {
        if (to == address(0) || to == from) revert InvalidMember(to);
        Account memory t = _accounts[to];
        // Never held points, never took part in a migration (a reversal follows migrations).
        if (t.earnMonth != 0 || t.tailPoints != 0 || t.count != 0 || t.flags != 0) revert AccountInUse(to);
        if (_originOf[to] != address(0) || _currentOf[to] != address(0)) revert AccountInUse(to);
        address first = _originOf[from] == address(0) ? from : _originOf[from];
        // An address its points already left cannot move them again (nor redirect reversals).
        if (_holder(from) != from) revert InvalidMember(from);
        mapping(uint256 => uint256) storage nonces = _memberNonces[from];
        _revertIf(_checkFresh(nonces, from, nonce, deadline));
        _revertIf(_checkSigner(keccak256(abi.encode(MIGRATE_TYPEHASH, from, to, nonce, deadline)), r, vs, from));
        _spendNonce(nonces, nonce);

        uint24 cur = CalendarMonths.monthOf(block.timestamp);
        Account memory a = _accounts[from];
        if (a.tailPoints != 0) _sweep(a, from, cur); // expired points expire as `from`'s
        // The ring moves slot by slot to the same indices: at most _MAX_RING slots.
        mapping(uint16 => uint256) storage src = _ring[from];
        mapping(uint16 => uint256) storage dst = _ring[to];
        uint256 points = a.tailPoints;
        for (uint16 i = 0; i < a.count; ++i) {
            uint16 slot = _at(a, i);
            uint256 packed = src[slot];
            points += _unpackPoints(packed);
            dst[slot] = packed;
            delete src[slot];
        }
        // The tier window's history: the 11 months before `earnMonth`, four per slot.
        if (a.earnMonth != 0) {
            for (uint256 g = (uint256(a.earnMonth) - 11) >> 2; g <= uint256(a.earnMonth) >> 2; ++g) {
                uint256 lanes = _earnedHist[from][g];
                if (lanes != 0) {
                    _earnedHist[to][g] = lanes;
                    delete _earnedHist[from][g];
                }
            }
        }
        if (a.flags & 1 != 0) {
            _assignedTiers[to] = _assignedTiers[from];
            delete _assignedTiers[from];
        }
        if (a.flags & _DEBT_FLAG != 0) {
            // The debt moves with the points (SPEC section 2, r2); the flag moves in `a`.
            _debts[to] = _debts[from];
            delete _debts[from];
        }
        _accounts[to] = a;
        delete _accounts[from];
        (_currentOf[first], _originOf[to]) = (to, first);
        emit Migrated(from, to, points);
        emit Transfer(from, to, points);
    }

    function _revertIf(bytes memory err) private pure {
        if (err.length != 0) {
            assembly ("memory-safe") {
                revert(add(err, 32), mload(err))
            }
        }
    }
}
