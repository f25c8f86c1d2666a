// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {LedgerBase} from "./LedgerBase.sol";
import {CalendarMonths} from "./CalendarMonths.sol";

/// @title CoalitionPoints
/// @notice One points currency shared by independent partners. Points are issued for
/// purchases (earn), burnt as payment (redemption), taken back on refunds (reversal) and
/// expire by calendar month. Every issue and burn is authorized by a signature of the
/// party that bears its cost, checked here; the gateway that submits batches is trusted
/// for liveness only.
/// @dev This contract holds the hot paths (earns, redemptions, reads); every other function
/// (operator calls, scheduled changes, signer rotation, reversals) lives in the module
/// `CoalitionPointsAdmin`, fixed at deployment, which the fallback runs by `delegatecall` on
/// this contract's storage. The module address is immutable: nothing here is upgradeable.
contract CoalitionPoints is LedgerBase {
    /// @dev What a valid earn will do (memory only).
    struct EarnPlan {
        uint256 points; // issued, bonus included
        uint24 expiry;
        uint24 flushMonth;
        uint256 flushPoints;
        uint256 bonus; // (r2) of the campaign the earn names
    }

    address private immutable _MODULE;

    /// @param name_ ERC-20 name; @param symbol_ ERC-20 symbol.
    /// @param admin the coalition operator; @param adminDelay seconds a handover waits.
    /// @param noticePeriod seconds between scheduling a programme change and its effect; at
    /// least `MIN_NOTICE_PERIOD` except on development chains (anvil 31337, Hardhat/Ganache
    /// 1337, eth-tester 131277322940537).
    /// @param module the deployed `CoalitionPointsAdmin` (same sources, same layout).
    constructor(
        string memory name_,
        string memory symbol_,
        address admin,
        uint48 adminDelay,
        uint64 noticePeriod,
        address module
    ) LedgerBase(name_, symbol_, admin, adminDelay) {
        if (noticePeriod < MIN_NOTICE_PERIOD && !_developmentChain()) revert NoticePeriodTooShort(noticePeriod);
        if (module.code.length == 0) revert InvalidModule(module);
        _MODULE = module;
        _noticePeriod = noticePeriod;
        _tiers.push(Tier({threshold: 0, multiplierBps: uint32(_BPS)}));
    }

    /// @notice Runs every function this contract does not define in the operator module,
    /// on this contract's storage.
    fallback() external {
        address module = _MODULE;
        assembly ("memory-safe") {
            calldatacopy(0, 0, calldatasize())
            let ok := delegatecall(gas(), module, 0, calldatasize(), 0, 0)
            returndatacopy(0, 0, returndatasize())
            if iszero(ok) { revert(0, returndatasize()) }
            return(0, returndatasize())
        }
    }

    /// @notice The operator module this ledger delegates to.
    function module() external view returns (address) {
        return _MODULE;
    }

    // ================================================================ signed operations

    /// @notice Issues points for each valid earn; invalid ones are skipped with
    /// `OperationRejected`. Commits the accepted earns' Merkle root for later reversals.
    /// @return accepted number of earns applied.
    function earnBatch(EarnOp[] calldata ops) external whenNotPaused returns (uint256 accepted) {
        uint24 cur = CalendarMonths.monthOf(block.timestamp);
        bytes32[] memory leaves = new bytes32[](ops.length);
        for (uint256 i = 0; i < ops.length; ++i) {
            (bytes memory err, bytes32 leaf) = _earn(ops[i], cur);
            if (err.length != 0) {
                emit OperationRejected(KIND_EARN, i, ops[i].receiptRef, err);
            } else {
                leaves[accepted++] = leaf;
            }
        }
        if (accepted != 0) {
            bytes32 root = _merkleRoot(leaves, accepted);
            uint64 batchId = ++_earnBatchCount;
            _earnRoots[batchId] = bytes32((uint256(root) & ~_EXPIRY_BITS) | _expiryFor(cur));
            emit EarnBatchCommitted(batchId, root, accepted);
        }
    }

    /// @notice Burns points for each valid member-signed redemption; skips invalid ones.
    /// Commits the accepted redemptions' Merkle root for later refunds (r2).
    /// @return accepted number of redemptions applied.
    function redeemBatch(RedeemOp[] calldata ops) external whenNotPaused returns (uint256 accepted) {
        uint24 cur = CalendarMonths.monthOf(block.timestamp);
        uint64 batchId = _redeemBatchCount + 1;
        bytes32[] memory leaves = new bytes32[](ops.length);
        uint32[] memory expiries = new uint32[](ops.length);
        for (uint256 i = 0; i < ops.length; ++i) {
            RedeemOp calldata op = ops[i];
            (bytes memory err, uint24 expiry) = _redeem(op, cur);
            if (err.length != 0) {
                emit OperationRejected(KIND_REDEEM, i, op.receiptRef, err);
            } else {
                leaves[accepted] = keccak256(
                    abi.encode(op.partnerId, op.member, op.receiptRef, op.points, expiry, batchId, accepted)
                );
                expiries[accepted++] = expiry;
            }
        }
        if (accepted != 0) {
            assembly ("memory-safe") {
                mstore(expiries, accepted)
            }
            bytes32 root = _merkleRoot(leaves, accepted);
            _redeemBatchCount = batchId;
            _redeemRoots[batchId] = root;
            emit RedeemBatchCommitted(batchId, root, expiries);
        }
    }

    /// @notice Emits `Expired` for the expired points of each member. Balances already
    /// exclude them; this puts the event on-chain. Anyone may call it.
    function expire(address[] calldata members) external whenNotPaused {
        uint24 cur = CalendarMonths.monthOf(block.timestamp);
        for (uint256 i = 0; i < members.length; ++i) {
            Account memory a = _accounts[members[i]];
            if (a.tailPoints == 0) continue;
            _sweep(a, members[i], cur);
            _accounts[members[i]] = a;
        }
    }

    // ================================================================ views

    /// @notice The UTC calendar month index of the current block.
    function currentMonth() external view returns (uint24) {
        return CalendarMonths.monthOf(block.timestamp);
    }

    /// @notice The UTC calendar month index of `timestamp`.
    function monthOf(uint256 timestamp) external pure returns (uint24) {
        return CalendarMonths.monthOf(timestamp);
    }

    /// @notice Number of partners registered; ids run from 1 to this.
    function partnerCount() external view returns (uint32) {
        return _partnerCount;
    }

    /// @notice A partner's settings and running totals.
    function partner(uint32 partnerId) external view returns (PartnerInfo memory info) {
        PartnerCore memory p = _partners[partnerId];
        IssueTotals memory it = _issueTotals[partnerId];
        BurnTotals memory bt = _burnTotals[partnerId];
        info = PartnerInfo({
            signer: p.signer,
            active: p.active,
            ratePoints: p.ratePoints,
            ratePerMinorUnits: p.ratePerMinorUnits,
            currency: p.currency,
            allowance: it.allowance,
            issued: it.issued,
            reversed: bt.reversed,
            redeemed: bt.redeemed,
            activeFrom: it.activeFrom,
            awarded: _awarded[partnerId]
        });
    }

    /// @notice The tier table, lowest threshold first.
    function tiers() external view returns (Tier[] memory) {
        return _tiers;
    }

    /// @notice Expiry policy N: points expire at the end of the N-th full month after the
    /// month they were earned in; 0 means never.
    function expiryMonths() external view returns (uint16) {
        return _expiryMonths;
    }

    /// @notice Whether members may transfer points to each other.
    function transfersEnabled() external view returns (bool) {
        return _transfersEnabled;
    }

    /// @notice Settlement value of one point, in minor units of `currency`.
    function pointValue() external view returns (uint256 minorUnitsPerPoint, bytes3 currency) {
        return (_pointValue, _pointCurrency);
    }

    /// @notice Points `member` earned in the trailing 12 calendar months (this one included).
    function qualifyingPoints(address member) public view returns (uint256) {
        Account memory a = _accounts[member];
        uint24 cur = CalendarMonths.monthOf(block.timestamp);
        if (a.earnMonth == cur) return a.windowTotal;
        if (a.earnMonth == 0 || cur - a.earnMonth >= 12) return 0;
        return a.earnedInMonth + _histSum(member, cur - 11, a.earnMonth);
    }

    /// @notice Index in `tiers()` of the member's current tier.
    function tierOf(address member) external view returns (uint256) {
        return _memberTier(_accounts[member], member, qualifyingPoints(member));
    }

    /// @notice The member's live points by expiry month, earliest first (`NEVER` last).
    function expiringOf(address member) external view returns (uint24[] memory months, uint256[] memory points) {
        Account memory a = _accounts[member];
        uint24 cur = CalendarMonths.monthOf(block.timestamp);
        uint256 n;
        months = new uint24[](uint256(a.count) + 1);
        points = new uint256[](uint256(a.count) + 1);
        if (a.tailPoints != 0 && a.tailExpiry >= cur) {
            for (uint16 i = 0; i < a.count; ++i) {
                (uint24 expiry, uint256 p) = _unpack(_ring[member][_at(a, i)]);
                if (expiry >= cur) (months[n], points[n++]) = (expiry, p);
            }
            (months[n], points[n++]) = (a.tailExpiry, a.tailPoints);
        }
        // Trim the arrays to the live buckets.
        assembly ("memory-safe") {
            mstore(months, n)
            mstore(points, n)
        }
    }

    /// @notice Points that expired at the end of `month` (0 for a month not yet over).
    function expiredIn(uint24 month) external view returns (uint256) {
        if (month >= CalendarMonths.monthOf(block.timestamp)) return 0;
        return _supplyByExpiry[month];
    }

    /// @notice Whether a partner's signed-operation nonce is spent.
    function partnerNonceUsed(uint32 partnerId, uint256 nonce) external view returns (bool) {
        return _partnerNonces[partnerId][nonce >> 8] & (1 << (nonce & 0xff)) != 0;
    }

    /// @notice Whether a member's redemption nonce is spent.
    function memberNonceUsed(address member, uint256 nonce) external view returns (bool) {
        return _memberNonces[member][nonce >> 8] & (1 << (nonce & 0xff)) != 0;
    }

    /// @notice Merkle root of the accepted earns of batch `batchId` (zero if none).
    function earnRoot(uint64 batchId) external view returns (bytes32) {
        return _earnRoots[batchId];
    }

    /// @notice Number of earn batches committed so far.
    function earnBatchCount() external view returns (uint64) {
        return _earnBatchCount;
    }

    /// @notice Points already reversed from the earn with leaf `earnLeaf`.
    function reversedOf(bytes32 earnLeaf) external view returns (uint256) {
        return _reversedOf[earnLeaf];
    }

    // ================================================================ operation internals

    /// @dev Applies an earn that `_planEarn` found valid; a rejected earn leaves no trace
    /// but its event, because every check runs before the first state change.
    function _earn(EarnOp calldata op, uint24 cur) private returns (bytes memory err, bytes32 leaf) {
        Account memory a = _accounts[op.member];
        EarnPlan memory plan;
        err = _planEarn(op, cur, a, plan);
        if (err.length != 0) return (err, 0);

        _spendNonce(_partnerNonces[op.partnerId], op.nonce);
        if (plan.flushPoints != 0) _addHist(op.member, plan.flushMonth, plan.flushPoints, true);
        IssueTotals storage totals = _issueTotals[op.partnerId];
        // unchecked: _planEarn checked both lanes against _LANE_MAX and points <= allowance;
        // `issued` is a uint88 sum of uint48 amounts (2^40 maximal earns to overflow).
        unchecked {
            // Bonus points do not qualify for tiers (r2).
            a.earnedInMonth += uint56(plan.points - plan.bonus);
            a.windowTotal += uint56(plan.points - plan.bonus);
            totals.allowance -= uint128(plan.points);
            totals.issued += uint88(plan.points);
        }
        // _planEarn capped the bonus by the budget left.
        if (plan.bonus != 0) _campaignSpent[op.campaignId] += plan.bonus;
        // (r2) A member in debt pays it first: the partner issues all the points, the balance
        // gets what is left (`DebtRepaid` says how many went to the debt).
        uint256 credit = plan.points;
        if (a.flags & _DEBT_FLAG != 0) credit = _repay(a, op.member, credit, op.partnerId, op.receiptRef);
        _accounts[op.member] = a;
        if (credit != 0) _update(address(0), op.member, credit);
        emit Earned(op.partnerId, op.member, op.receiptRef, op.spend, plan.points, plan.expiry, op.campaignId, plan.bonus);
        leaf = plan.bonus == 0
            ? keccak256(abi.encode(op.partnerId, op.member, op.receiptRef, op.spend, plan.points, cur))
            : keccak256(abi.encode(op.partnerId, op.member, op.receiptRef, op.spend, plan.points, cur, plan.bonus));
    }

    /// @dev Every check of an earn, without changing state. Rolls `a`'s tier window to
    /// `cur` in memory and fills `plan`; returns the encoded error of a rejected earn.
    function _planEarn(EarnOp calldata op, uint24 cur, Account memory a, EarnPlan memory plan)
        private
        view
        returns (bytes memory err)
    {
        PartnerCore memory p = _partners[op.partnerId];
        err = _checkPartner(p, op.partnerId);
        if (err.length != 0) return err;
        IssueTotals memory totals = _issueTotals[op.partnerId];
        if (block.timestamp < totals.activeFrom) {
            // A new issuer is announced a notice period before its first point (SPEC section 3).
            return abi.encodeWithSelector(PartnerNotYetActive.selector, op.partnerId, totals.activeFrom);
        }
        if (op.member == address(0)) return abi.encodeWithSelector(InvalidMember.selector, op.member);
        if (op.spend == 0 || op.spend > MAX_SPEND) {
            return abi.encodeWithSelector(AmountOutOfRange.selector, op.spend, MAX_SPEND);
        }
        err = _checkFresh(_partnerNonces[op.partnerId], p.signer, op.nonce, op.deadline);
        if (err.length != 0) return err;
        // (r2) An earn naming a campaign: the partner's own, and its signature binds the id.
        CampaignTerms memory c;
        if (op.campaignId != 0) {
            c = _campaigns[op.campaignId];
            if (c.partnerId != op.partnerId) return abi.encodeWithSelector(UnknownCampaign.selector, op.campaignId);
        }
        bytes32 structHash = op.campaignId == 0
            ? keccak256(
                abi.encode(
                    EARN_TYPEHASH, op.partnerId, op.member, op.spend, op.maxPoints, op.receiptRef, op.nonce, op.deadline
                )
            )
            : keccak256(
                abi.encode(
                    _CAMPAIGN_EARN_TYPEHASH,
                    op.partnerId,
                    op.member,
                    op.spend,
                    op.maxPoints,
                    op.campaignId,
                    op.receiptRef,
                    op.nonce,
                    op.deadline
                )
            );
        err = _checkSigner(structHash, op.r, op.vs, p.signer);
        if (err.length != 0) return err;

        (plan.flushMonth, plan.flushPoints) = _rollWindow(a, op.member, cur);
        uint256 tier = _memberTier(a, op.member, a.windowTotal);
        // Checked arithmetic cannot overflow: spend < 2^64, both factors < 2^32.
        uint256 points =
            (op.spend * p.ratePoints * _tiers[tier].multiplierBps) / (uint256(p.ratePerMinorUnits) * _BPS);
        if (points == 0) return abi.encodeWithSelector(ZeroPoints.selector);
        // (r2) The campaign's bonus, if it runs at the block's time and the member's tier and
        // the spend qualify; never beyond the budget left. Not qualifying points.
        if (
            op.campaignId != 0 && block.timestamp >= c.start && block.timestamp < c.end && op.spend >= c.minSpend
                && (uint256(c.tierMask) >> tier) & 1 != 0
        ) {
            // Checked: points < 2^64 * 2^32 * 2^32 / 10^4 fits, times 2^24 still fits 256 bits.
            uint256 bonus = points * c.bonusBps / _BPS + c.fixedBonus;
            uint256 left = c.budget - _campaignSpent[op.campaignId];
            plan.bonus = bonus < left ? bonus : left;
            points += plan.bonus;
        }
        if (points > MAX_OP_POINTS) return abi.encodeWithSelector(AmountOutOfRange.selector, points, MAX_OP_POINTS);
        // The partner signed the most it accepts to issue, whatever the rate or tier is by the
        // time the earn is mined (issue 10, finding 5).
        if (points > op.maxPoints) return abi.encodeWithSelector(MaxPointsExceeded.selector, op.maxPoints, points);
        if (points > totals.allowance) {
            return abi.encodeWithSelector(AllowanceExceeded.selector, op.partnerId, totals.allowance, points);
        }
        uint24 expiry = _expiryFor(cur);
        if (
            a.windowTotal + points - plan.bonus > _LANE_MAX
                || (a.tailExpiry == expiry && a.tailPoints + points > _LANE_MAX)
        ) {
            return abi.encodeWithSelector(AmountOutOfRange.selector, points, _LANE_MAX - a.windowTotal);
        }
        (plan.points, plan.expiry) = (points, expiry);
    }

    /// @dev Returns the latest expiry month among the buckets the redemption burnt (what a
    /// refund of it restores, r2).
    function _redeem(RedeemOp calldata op, uint24 cur) private returns (bytes memory err, uint24 expiry) {
        PartnerCore memory p = _partners[op.partnerId];
        err = _checkPartner(p, op.partnerId);
        if (err.length != 0) return (err, 0);
        if (op.member == address(0)) return (abi.encodeWithSelector(InvalidMember.selector, op.member), 0);
        if (op.points == 0 || op.points > MAX_OP_POINTS) {
            return (abi.encodeWithSelector(AmountOutOfRange.selector, op.points, MAX_OP_POINTS), 0);
        }
        mapping(uint256 => uint256) storage nonces = _memberNonces[op.member];
        err = _checkFresh(nonces, op.member, op.nonce, op.deadline);
        if (err.length != 0) return (err, 0);
        bytes32 structHash = keccak256(
            abi.encode(REDEEM_TYPEHASH, op.member, op.partnerId, op.points, op.receiptRef, op.nonce, op.deadline)
        );
        err = _checkSigner(structHash, op.r, op.vs, op.member);
        if (err.length != 0) return (err, 0);
        uint256 balance = balanceOf(op.member);
        if (balance < op.points) {
            return (abi.encodeWithSelector(InsufficientPoints.selector, op.member, balance, op.points), 0);
        }

        _spendNonce(nonces, op.nonce);
        _burnTotals[op.partnerId].redeemed += uint128(op.points);
        // `_take` directly rather than `_burn` (the same path: `_update` with no recipient)
        // to learn the slices' expiry months; they come earliest first, so the last is the
        // latest. The pause is checked by `redeemBatch`.
        Slice[] memory slices = _take(op.member, op.points, cur);
        expiry = slices[slices.length - 1].expiry;
        emit Transfer(op.member, address(0), op.points);
        emit Redeemed(op.partnerId, op.member, op.receiptRef, op.points);
    }

    function _developmentChain() private view returns (bool) {
        return block.chainid == 31337 || block.chainid == 1337 || block.chainid == 131277322940537;
    }
}
