// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {Hashes} from "@openzeppelin/contracts/utils/cryptography/Hashes.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {ICoalitionPoints} from "./ICoalitionPoints.sol";
import {CalendarMonths} from "./CalendarMonths.sol";

/// @title CoalitionPoints
/// @notice One points currency shared by independent partners. Points are issued for
/// purchases (earn), burnt as payment (redemption), taken back on refunds (reversal) and
/// expire by calendar month. Every issue and burn is authorized by a signature of the
/// party that bears its cost, checked here; the gateway that submits batches is trusted
/// for liveness only.
/// @dev Storage layout, chosen for gas (see docs/contracts.md):
/// - each member has one packed `Account` slot holding its tier window and its newest
///   expiry bucket (the "tail"), so an earn to an existing member writes one slot;
/// - older buckets sit in a per-member ring sorted by expiry month, swept from the front;
/// - earns are not stored one by one: each batch commits a Merkle root of its accepted
///   earns, and a reversal proves its earn against that root.
contract CoalitionPoints is ICoalitionPoints, ERC20, AccessControlDefaultAdminRules, Pausable, EIP712 {
    /// @notice Expiry month of points that never expire (policy N = 0).
    uint24 public constant NEVER = type(uint24).max;
    /// @notice Upper bound of the expiry policy, which bounds the live buckets per member.
    uint16 public constant MAX_EXPIRY_MONTHS = 120;
    /// @notice Largest spend (minor units) one earn may report.
    uint256 public constant MAX_SPEND = type(uint64).max;
    /// @notice Largest number of points one operation may move.
    uint256 public constant MAX_OP_POINTS = type(uint48).max;
    /// @notice Most rows in the tier table.
    uint256 public constant MAX_TIERS = 8;
    /// @notice Kinds named by `OperationRejected`.
    uint8 public constant KIND_EARN = 1;
    uint8 public constant KIND_REDEEM = 2;
    uint8 public constant KIND_REVERSE = 3;

    bytes32 public constant EARN_TYPEHASH = keccak256(
        "Earn(uint32 partnerId,address member,uint256 spend,bytes32 receiptRef,uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant REDEEM_TYPEHASH = keccak256(
        "Redeem(address member,uint32 partnerId,uint256 points,bytes32 receiptRef,uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant REVERSE_TYPEHASH = keccak256(
        "Reverse(uint32 partnerId,bytes32 earnLeaf,uint256 points,bytes32 receiptRef,uint256 nonce,uint256 deadline)"
    );

    uint256 private constant _BPS = 10_000;
    uint256 private constant _LANE_MAX = type(uint56).max;
    // Live buckets per member are bounded by the distinct expiry months that can be live at
    // once (current .. current + MAX_EXPIRY_MONTHS) on each side of an insertion point.
    uint16 private constant _MAX_RING = 2 * MAX_EXPIRY_MONTHS + 2;

    /// @dev One slot per member. `tail*` is the newest (latest-expiring) bucket; the ring
    /// holds the older ones, sorted by expiry ascending. Invariant: tailPoints == 0 implies
    /// count == 0. `windowTotal` is the points earned in months (earnMonth-11 .. earnMonth).
    struct Account {
        uint24 earnMonth;
        uint56 earnedInMonth;
        uint56 windowTotal;
        uint24 tailExpiry;
        uint56 tailPoints;
        uint16 head;
        uint16 count;
    }

    struct PartnerCore {
        address signer;
        bool active;
        uint32 ratePoints;
        uint32 ratePerMinorUnits;
        bytes3 currency;
    }

    /// @dev Split in two slots so an earn touches one and a redemption the other.
    struct IssueTotals {
        uint128 allowance;
        uint128 issued;
    }

    struct BurnTotals {
        uint128 reversed;
        uint128 redeemed;
    }

    /// @dev What a valid earn will do (memory only).
    struct EarnPlan {
        uint256 points;
        uint24 expiry;
        uint24 flushMonth;
        uint256 flushPoints;
    }

    /// @dev A slice of a member's points with one expiry month (memory only).
    struct Slice {
        uint24 expiry;
        uint256 points;
    }

    mapping(address member => Account) private _accounts;
    mapping(address member => mapping(uint16 index => uint256 packed)) private _ring;
    // Points earned per month, four uint64 lanes per slot, keyed by month / 4.
    mapping(address member => mapping(uint256 group => uint256 lanes)) private _earnedHist;
    // Live points per expiry month; for a past month, what expired at its end (breakage).
    mapping(uint256 expiryMonth => uint256) private _supplyByExpiry;
    uint24 private _maxDatedExpiry;

    mapping(uint32 partnerId => PartnerCore) private _partners;
    mapping(uint32 partnerId => IssueTotals) private _issueTotals;
    mapping(uint32 partnerId => BurnTotals) private _burnTotals;
    uint32 private _partnerCount;

    mapping(uint32 partnerId => mapping(uint256 word => uint256 bits)) private _partnerNonces;
    mapping(address member => mapping(uint256 word => uint256 bits)) private _memberNonces;

    mapping(uint64 batchId => bytes32 root) private _earnRoots;
    uint64 private _earnBatchCount;
    mapping(bytes32 earnLeaf => uint256) private _reversedOf;

    Tier[] private _tiers;
    uint16 private _expiryMonths = 12;
    bool private _transfersEnabled;
    uint256 private _pointValue;
    bytes3 private _pointCurrency;

    /// @param name_ ERC-20 name; @param symbol_ ERC-20 symbol.
    /// @param admin the coalition operator; @param adminDelay seconds a handover waits.
    constructor(string memory name_, string memory symbol_, address admin, uint48 adminDelay)
        ERC20(name_, symbol_)
        AccessControlDefaultAdminRules(adminDelay, admin)
        EIP712("Coalition Points", "1")
    {
        _tiers.push(Tier({threshold: 0, multiplierBps: uint32(_BPS)}));
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
            _earnRoots[batchId] = root;
            emit EarnBatchCommitted(batchId, root, accepted);
        }
    }

    /// @notice Burns points for each valid member-signed redemption; skips invalid ones.
    /// @return accepted number of redemptions applied.
    function redeemBatch(RedeemOp[] calldata ops) external whenNotPaused returns (uint256 accepted) {
        for (uint256 i = 0; i < ops.length; ++i) {
            bytes memory err = _redeem(ops[i]);
            if (err.length != 0) emit OperationRejected(KIND_REDEEM, i, ops[i].receiptRef, err);
            else ++accepted;
        }
    }

    /// @notice Takes back points of earns for each valid partner-signed reversal; skips
    /// invalid ones.
    /// @return accepted number of reversals applied.
    function reverseBatch(ReverseOp[] calldata ops) external whenNotPaused returns (uint256 accepted) {
        for (uint256 i = 0; i < ops.length; ++i) {
            bytes memory err = _reverse(ops[i]);
            if (err.length != 0) emit OperationRejected(KIND_REVERSE, i, ops[i].receiptRef, err);
            else ++accepted;
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

    // ================================================================ ERC-20 surface

    /// @notice Points are whole numbers.
    function decimals() public pure override returns (uint8) {
        return 0;
    }

    /// @notice Live (unexpired) points of `account`.
    function balanceOf(address account) public view override returns (uint256 total) {
        Account memory a = _accounts[account];
        uint24 cur = CalendarMonths.monthOf(block.timestamp);
        // Tail expired means every older bucket expired too.
        if (a.tailPoints == 0 || a.tailExpiry < cur) return 0;
        total = a.tailPoints;
        for (uint16 i = 0; i < a.count; ++i) {
            (uint24 expiry, uint256 points) = _unpack(_ring[account][_at(a, i)]);
            if (expiry >= cur) total += points;
        }
    }

    /// @notice Live (unexpired) points of all members.
    function totalSupply() public view override returns (uint256 total) {
        uint24 cur = CalendarMonths.monthOf(block.timestamp);
        for (uint256 m = cur; m <= _maxDatedExpiry; ++m) {
            total += _supplyByExpiry[m];
        }
        total += _supplyByExpiry[NEVER];
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
            redeemed: bt.redeemed
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
        return _tierIndex(qualifyingPoints(member));
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

    // ================================================================ operator

    /// @notice Registers a partner, active, with its signer, earn rate and allowance.
    /// @return partnerId the new partner's id (from 1).
    function addPartner(
        address signer,
        uint32 ratePoints,
        uint32 ratePerMinorUnits,
        bytes3 currency,
        uint128 allowance
    ) external onlyRole(DEFAULT_ADMIN_ROLE) returns (uint32 partnerId) {
        _checkPartnerSettings(signer, ratePoints, ratePerMinorUnits);
        partnerId = ++_partnerCount;
        _partners[partnerId] = PartnerCore(signer, true, ratePoints, ratePerMinorUnits, currency);
        _issueTotals[partnerId].allowance = allowance;
        emit PartnerAdded(partnerId, signer, currency);
        emit PartnerUpdated(partnerId, signer, ratePoints, ratePerMinorUnits);
        emit AllowanceSet(partnerId, allowance);
    }

    /// @notice Changes a partner's signer (key rotation) or earn rate.
    function updatePartner(uint32 partnerId, address signer, uint32 ratePoints, uint32 ratePerMinorUnits)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
    {
        PartnerCore storage p = _knownPartner(partnerId);
        _checkPartnerSettings(signer, ratePoints, ratePerMinorUnits);
        (p.signer, p.ratePoints, p.ratePerMinorUnits) = (signer, ratePoints, ratePerMinorUnits);
        emit PartnerUpdated(partnerId, signer, ratePoints, ratePerMinorUnits);
    }

    /// @notice Suspends (`false`) or reactivates (`true`) a partner.
    function setPartnerActive(uint32 partnerId, bool active) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _knownPartner(partnerId).active = active;
        emit PartnerStatusChanged(partnerId, active);
    }

    /// @notice Sets the points a partner may still issue (its prepaid block).
    function setAllowance(uint32 partnerId, uint128 allowance) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _knownPartner(partnerId);
        _issueTotals[partnerId].allowance = allowance;
        emit AllowanceSet(partnerId, allowance);
    }

    /// @notice Replaces the tier table: first threshold 0, thresholds strictly ascending,
    /// multipliers from 1 to 1,000,000 basis points.
    function setTiers(Tier[] calldata table) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (table.length == 0 || table.length > MAX_TIERS || table[0].threshold != 0) revert InvalidTierTable();
        delete _tiers;
        for (uint256 i = 0; i < table.length; ++i) {
            Tier calldata t = table[i];
            if (t.multiplierBps == 0 || t.multiplierBps > 100 * _BPS) revert InvalidTierTable();
            if (i != 0 && t.threshold <= table[i - 1].threshold) revert InvalidTierTable();
            _tiers.push(t);
        }
        emit TiersSet(table);
    }

    /// @notice Sets the expiry policy for points earned from now on (0 = never expire).
    function setExpiryMonths(uint16 months) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (months > MAX_EXPIRY_MONTHS) revert InvalidExpiryMonths(months);
        _expiryMonths = months;
        emit ExpiryPolicySet(months);
    }

    /// @notice Switches member-to-member transfers on or off.
    function setTransfersEnabled(bool enabled) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _transfersEnabled = enabled;
        emit TransfersSwitched(enabled);
    }

    /// @notice Sets the settlement value of a point.
    function setPointValue(uint256 minorUnitsPerPoint, bytes3 currency) external onlyRole(DEFAULT_ADMIN_ROLE) {
        (_pointValue, _pointCurrency) = (minorUnitsPerPoint, currency);
        emit PointValueSet(minorUnitsPerPoint, currency);
    }

    /// @notice Stops every balance change until `unpause`.
    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _pause();
    }

    /// @notice Lets balances change again.
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
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
        // `issued` is a uint128 sum of uint48 amounts.
        unchecked {
            a.earnedInMonth += uint56(plan.points);
            a.windowTotal += uint56(plan.points);
            totals.allowance -= uint128(plan.points);
            totals.issued += uint128(plan.points);
        }
        _accounts[op.member] = a;
        _update(address(0), op.member, plan.points);
        emit Earned(op.partnerId, op.member, op.receiptRef, op.spend, plan.points, plan.expiry);
        leaf = keccak256(abi.encode(op.partnerId, op.member, op.receiptRef, op.spend, plan.points, cur));
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
        if (op.member == address(0)) return abi.encodeWithSelector(InvalidMember.selector, op.member);
        if (op.spend == 0 || op.spend > MAX_SPEND) {
            return abi.encodeWithSelector(AmountOutOfRange.selector, op.spend, MAX_SPEND);
        }
        err = _checkFresh(_partnerNonces[op.partnerId], p.signer, op.nonce, op.deadline);
        if (err.length != 0) return err;
        bytes32 structHash = keccak256(
            abi.encode(EARN_TYPEHASH, op.partnerId, op.member, op.spend, op.receiptRef, op.nonce, op.deadline)
        );
        err = _checkSigner(structHash, op.r, op.vs, p.signer);
        if (err.length != 0) return err;

        (plan.flushMonth, plan.flushPoints) = _rollWindow(a, op.member, cur);
        // Checked arithmetic cannot overflow: spend < 2^64, both factors < 2^32.
        uint256 points = (op.spend * p.ratePoints * _tiers[_tierIndex(a.windowTotal)].multiplierBps)
            / (uint256(p.ratePerMinorUnits) * _BPS);
        if (points == 0) return abi.encodeWithSelector(ZeroPoints.selector);
        if (points > MAX_OP_POINTS) return abi.encodeWithSelector(AmountOutOfRange.selector, points, MAX_OP_POINTS);
        uint256 allowance = _issueTotals[op.partnerId].allowance;
        if (points > allowance) {
            return abi.encodeWithSelector(AllowanceExceeded.selector, op.partnerId, allowance, points);
        }
        uint24 expiry = _expiryFor(cur);
        if (a.windowTotal + points > _LANE_MAX || (a.tailExpiry == expiry && a.tailPoints + points > _LANE_MAX)) {
            return abi.encodeWithSelector(AmountOutOfRange.selector, points, _LANE_MAX - a.windowTotal);
        }
        (plan.points, plan.expiry) = (points, expiry);
    }

    function _redeem(RedeemOp calldata op) private returns (bytes memory err) {
        PartnerCore memory p = _partners[op.partnerId];
        err = _checkPartner(p, op.partnerId);
        if (err.length != 0) return err;
        if (op.member == address(0)) return abi.encodeWithSelector(InvalidMember.selector, op.member);
        if (op.points == 0 || op.points > MAX_OP_POINTS) {
            return abi.encodeWithSelector(AmountOutOfRange.selector, op.points, MAX_OP_POINTS);
        }
        mapping(uint256 => uint256) storage nonces = _memberNonces[op.member];
        err = _checkFresh(nonces, op.member, op.nonce, op.deadline);
        if (err.length != 0) return err;
        bytes32 structHash = keccak256(
            abi.encode(REDEEM_TYPEHASH, op.member, op.partnerId, op.points, op.receiptRef, op.nonce, op.deadline)
        );
        err = _checkSigner(structHash, op.r, op.vs, op.member);
        if (err.length != 0) return err;
        uint256 balance = balanceOf(op.member);
        if (balance < op.points) {
            return abi.encodeWithSelector(InsufficientPoints.selector, op.member, balance, op.points);
        }

        _spendNonce(nonces, op.nonce);
        _burnTotals[op.partnerId].redeemed += uint128(op.points);
        _burn(op.member, op.points);
        emit Redeemed(op.partnerId, op.member, op.receiptRef, op.points);
    }

    function _reverse(ReverseOp calldata op) private returns (bytes memory err) {
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
        bytes32 leaf = keccak256(abi.encode(op.partnerId, e.member, e.receiptRef, e.spend, e.points, e.earnMonth));
        bytes32 structHash = keccak256(
            abi.encode(REVERSE_TYPEHASH, op.partnerId, leaf, op.points, op.receiptRef, op.nonce, op.deadline)
        );
        err = _checkSigner(structHash, op.r, op.vs, p.signer);
        if (err.length != 0) return err;
        bytes32 root = _earnRoots[e.batchId];
        if (root == 0 || !MerkleProof.verify(e.proof, root, leaf)) {
            return abi.encodeWithSelector(UnknownEarn.selector, leaf);
        }
        uint256 done = _reversedOf[leaf];
        if (done + op.points > e.points) {
            return abi.encodeWithSelector(ReversalExceedsEarn.selector, leaf, e.points - done, op.points);
        }
        uint256 balance = balanceOf(e.member);
        if (balance < op.points) {
            return abi.encodeWithSelector(InsufficientPoints.selector, e.member, balance, op.points);
        }

        _spendNonce(nonces, op.nonce);
        _reversedOf[leaf] = done + op.points;
        _unearn(e.member, e.earnMonth, op.points);
        IssueTotals storage it = _issueTotals[op.partnerId];
        // A refunded purchase returns its points to the partner's prepaid block.
        uint256 restored = uint256(it.allowance) + op.points;
        it.allowance = restored > type(uint128).max ? type(uint128).max : uint128(restored);
        _burnTotals[op.partnerId].reversed += uint128(op.points);
        _burn(e.member, op.points);
        emit Reversed(op.partnerId, e.member, op.receiptRef, op.points, e.receiptRef);
    }

    // ================================================================ balance changes

    /// @dev The single path of every balance change (OpenZeppelin's hook): mints credit the
    /// current expiry bucket, burns consume earliest-expiring points first, transfers move
    /// points with their expiry months so a transfer never extends a point's life.
    function _update(address from, address to, uint256 value) internal override whenNotPaused {
        uint24 cur = CalendarMonths.monthOf(block.timestamp);
        if (from == address(0)) {
            _credit(to, _expiryFor(cur), value, cur);
        } else {
            if (to != address(0) && !_transfersEnabled) revert TransfersDisabled();
            Slice[] memory slices = _take(from, value, cur);
            if (to != address(0)) {
                for (uint256 i = 0; i < slices.length; ++i) {
                    _credit(to, slices[i].expiry, slices[i].points, cur);
                }
            }
        }
        emit Transfer(from, to, value);
    }

    /// @dev Adds `points` expiring at `expiry` to `member`, keeping buckets sorted.
    function _credit(address member, uint24 expiry, uint256 points, uint24 cur) private {
        Account memory a = _accounts[member];
        if (a.tailPoints == 0 || expiry > a.tailExpiry) {
            // _pushTail leaves the tail empty: moved into the ring, or expired.
            if (a.tailPoints != 0) _pushTail(a, member, cur);
            (a.tailExpiry, a.tailPoints) = (expiry, SafeCast.toUint56(points));
        } else if (expiry == a.tailExpiry) {
            a.tailPoints = SafeCast.toUint56(a.tailPoints + points);
        } else {
            _insert(a, member, expiry, points);
        }
        if (expiry != NEVER && expiry > _maxDatedExpiry) _maxDatedExpiry = expiry;
        _supplyByExpiry[expiry] += points;
        _accounts[member] = a;
    }

    /// @dev Moves the tail into the ring (after sweeping expired buckets), or expires it.
    function _pushTail(Account memory a, address member, uint24 cur) private {
        _sweep(a, member, cur);
        if (a.tailPoints == 0) return;
        if (a.count >= _MAX_RING) revert TooManyBuckets(member);
        _ring[member][_at(a, a.count)] = _pack(a.tailExpiry, a.tailPoints);
        unchecked {
            ++a.count; // bounded by _MAX_RING just above
        }
        a.tailPoints = 0;
    }

    /// @dev Inserts a bucket older than the tail into the sorted ring, or merges it into the
    /// bucket of the same month. Finds the place first and only then moves anything: moving
    /// while scanning and then merging once duplicated a bucket inside the ring (issue 10).
    function _insert(Account memory a, address member, uint24 expiry, uint256 points) private {
        mapping(uint16 => uint256) storage ring = _ring[member];
        uint16 i = a.count;
        // Scan from the newest: expired buckets sit at the front and are never reached,
        // because `expiry` is live and therefore later than all of them.
        while (i > 0) {
            uint16 slot = _at(a, i - 1);
            (uint24 e, uint256 p) = _unpack(ring[slot]);
            if (e == expiry) {
                ring[slot] = _pack(e, p + points);
                return;
            }
            if (e < expiry) break;
            --i;
        }
        if (a.count >= _MAX_RING) revert TooManyBuckets(member);
        // Make room at `i`: shift the newer buckets [i, count) up one slot, newest first.
        for (uint16 j = a.count; j > i; --j) {
            ring[_at(a, j)] = ring[_at(a, j - 1)];
        }
        ring[_at(a, i)] = _pack(expiry, points);
        ++a.count;
    }

    /// @dev Removes `value` points from `member`, earliest expiry first, expiring what is
    /// past on the way, and from the supply of their expiry months (`_credit` adds them back
    /// for a transfer). Reverts with the ERC-20 error when the balance is short.
    function _take(address member, uint256 value, uint24 cur) private returns (Slice[] memory slices) {
        Account memory a = _accounts[member];
        if (a.tailPoints != 0) _sweep(a, member, cur);
        uint256 live = a.tailPoints;
        mapping(uint16 => uint256) storage ring = _ring[member];
        for (uint16 i = 0; i < a.count; ++i) live += _unpackPoints(ring[_at(a, i)]);
        if (live < value) revert ERC20InsufficientBalance(member, live, value);

        slices = new Slice[](uint256(a.count) + 1);
        uint256 n;
        uint256 left = value;
        while (left != 0 && a.count != 0) {
            (uint24 e, uint256 p) = _unpack(ring[a.head]);
            uint256 part = p < left ? p : left;
            (slices[n].expiry, slices[n++].points) = (e, part);
            _supplyByExpiry[e] -= part;
            left -= part;
            if (part == p) {
                delete ring[a.head];
                unchecked {
                    ++a.head; // wraps by design: ring indices are modulo 2^16
                    --a.count;
                }
            } else {
                ring[a.head] = _pack(e, p - part);
            }
        }
        if (left != 0) {
            (slices[n].expiry, slices[n++].points) = (a.tailExpiry, left);
            _supplyByExpiry[a.tailExpiry] -= left;
            a.tailPoints -= uint56(left);
        }
        _accounts[member] = a;
        assembly ("memory-safe") {
            mstore(slices, n)
        }
    }

    /// @dev Expires every bucket whose month is over: front of the ring, then the tail.
    function _sweep(Account memory a, address member, uint24 cur) private {
        mapping(uint16 => uint256) storage ring = _ring[member];
        while (a.count != 0) {
            (uint24 e, uint256 p) = _unpack(ring[a.head]);
            if (e >= cur) break;
            _emitExpired(member, e, p);
            delete ring[a.head];
            unchecked {
                ++a.head; // wraps by design: ring indices are modulo 2^16
                --a.count;
            }
        }
        if (a.tailPoints != 0 && a.tailExpiry < cur) {
            _emitExpired(member, a.tailExpiry, a.tailPoints);
            a.tailPoints = 0;
        }
    }

    function _emitExpired(address member, uint24 expiry, uint256 points) private {
        // `_supplyByExpiry[expiry]` is left as it is: for a past month it records breakage.
        emit Expired(member, keccak256(abi.encode(member, expiry)), points, expiry);
        emit Transfer(member, address(0), points);
    }

    // ================================================================ tiers

    /// @dev Moves the member's tier window to `cur` in memory; returns the month and points
    /// to flush into the history (written only if the earn is applied; 0 points: none).
    function _rollWindow(Account memory a, address member, uint24 cur)
        private
        view
        returns (uint24 month, uint256 points)
    {
        if (a.earnMonth == cur) return (0, 0);
        uint256 window;
        // Months 12 or more back are outside every future window: neither kept nor counted.
        if (a.earnMonth != 0 && cur - a.earnMonth < 12) {
            (month, points) = (a.earnMonth, a.earnedInMonth);
            window = a.earnedInMonth + _histSum(member, cur - 11, a.earnMonth);
        }
        (a.earnMonth, a.earnedInMonth, a.windowTotal) = (cur, 0, uint56(window));
    }

    /// @dev Removes reversed points from the month they were earned in, for the tier.
    function _unearn(address member, uint256 month, uint256 points) private {
        Account storage a = _accounts[member];
        uint256 last = a.earnMonth;
        if (month == last) {
            uint56 d = points < a.earnedInMonth ? uint56(points) : a.earnedInMonth;
            a.earnedInMonth -= d;
            a.windowTotal -= d < a.windowTotal ? d : a.windowTotal;
        } else if (month < last && last - month < 12) {
            uint256 d = _addHist(member, month, points, false);
            a.windowTotal -= d < a.windowTotal ? uint56(d) : a.windowTotal;
        }
    }

    /// @dev Adds to (or subtracts from, saturating at zero) a month's earned history lane.
    /// @return changed the amount actually added or removed.
    function _addHist(address member, uint256 month, uint256 points, bool add) private returns (uint256 changed) {
        uint256 shift = (month & 3) * 64;
        uint256 lanes = _earnedHist[member][month >> 2];
        uint256 lane = (lanes >> shift) & type(uint64).max;
        if (add) {
            // A month's earnings fit 64 bits: they are bounded by the 56-bit window lane.
            changed = points;
            lane += points;
        } else {
            changed = points < lane ? points : lane;
            lane -= changed;
        }
        _earnedHist[member][month >> 2] = (lanes & ~(uint256(type(uint64).max) << shift)) | (lane << shift);
    }

    /// @dev Sum of earned history over months [from, toExclusive).
    function _histSum(address member, uint256 from, uint256 toExclusive) private view returns (uint256 sum) {
        uint256 group = type(uint256).max;
        uint256 lanes;
        for (uint256 m = from; m < toExclusive; ++m) {
            if (m >> 2 != group) {
                group = m >> 2;
                lanes = _earnedHist[member][group];
                if (lanes == 0) {
                    // Skip the rest of an empty group.
                    m = (group << 2) + 3;
                    continue;
                }
            }
            sum += (lanes >> ((m & 3) * 64)) & type(uint64).max;
        }
    }

    function _tierIndex(uint256 qualifying) private view returns (uint256 i) {
        i = _tiers.length - 1;
        while (i != 0 && qualifying < _tiers[i].threshold) --i;
    }

    // ================================================================ helpers

    function _expiryFor(uint24 cur) private view returns (uint24) {
        uint16 n = _expiryMonths;
        return n == 0 ? NEVER : cur + n;
    }

    function _checkPartner(PartnerCore memory p, uint32 partnerId) private pure returns (bytes memory) {
        if (p.signer == address(0)) return abi.encodeWithSelector(UnknownPartner.selector, partnerId);
        if (!p.active) return abi.encodeWithSelector(PartnerSuspended.selector, partnerId);
        return "";
    }

    function _checkFresh(mapping(uint256 => uint256) storage nonces, address signer, uint256 nonce, uint256 deadline)
        private
        view
        returns (bytes memory)
    {
        if (block.timestamp > deadline) {
            return abi.encodeWithSelector(SignatureExpired.selector, deadline, block.timestamp);
        }
        if (nonces[nonce >> 8] & (1 << (nonce & 0xff)) != 0) {
            return abi.encodeWithSelector(NonceAlreadyUsed.selector, signer, nonce);
        }
        return "";
    }

    function _spendNonce(mapping(uint256 => uint256) storage nonces, uint256 nonce) private {
        nonces[nonce >> 8] |= 1 << (nonce & 0xff);
    }

    function _checkSigner(bytes32 structHash, bytes32 r, bytes32 vs, address expected)
        private
        view
        returns (bytes memory)
    {
        (address recovered, ECDSA.RecoverError status,) = ECDSA.tryRecover(_hashTypedDataV4(structHash), r, vs);
        if (status != ECDSA.RecoverError.NoError || recovered != expected) {
            return abi.encodeWithSelector(InvalidSignature.selector, expected, recovered);
        }
        return "";
    }

    function _knownPartner(uint32 partnerId) private view returns (PartnerCore storage p) {
        p = _partners[partnerId];
        if (p.signer == address(0)) revert UnknownPartner(partnerId);
    }

    function _checkPartnerSettings(address signer, uint32 ratePoints, uint32 ratePerMinorUnits) private pure {
        if (signer == address(0)) revert InvalidSigner(signer);
        if (ratePoints == 0 || ratePerMinorUnits == 0) revert InvalidRate(ratePoints, ratePerMinorUnits);
    }

    /// @dev Builds the root of the first `n` leaves with OpenZeppelin's sorted-pair hash,
    /// carrying an odd node up a level, so `MerkleProof.verify` accepts its proofs.
    function _merkleRoot(bytes32[] memory nodes, uint256 n) private pure returns (bytes32) {
        while (n > 1) {
            uint256 j;
            for (uint256 i = 0; i + 1 < n; i += 2) {
                nodes[j++] = Hashes.commutativeKeccak256(nodes[i], nodes[i + 1]);
            }
            if (n & 1 == 1) nodes[j++] = nodes[n - 1];
            n = j;
        }
        return nodes[0];
    }

    function _at(Account memory a, uint16 offset) private pure returns (uint16) {
        unchecked {
            return a.head + offset; // wraps by design: ring indices are modulo 2^16
        }
    }

    function _pack(uint24 expiry, uint256 points) private pure returns (uint256) {
        return (uint256(expiry) << 232) | points;
    }

    function _unpack(uint256 packed) private pure returns (uint24 expiry, uint256 points) {
        return (uint24(packed >> 232), packed & ((1 << 232) - 1));
    }

    function _unpackPoints(uint256 packed) private pure returns (uint256) {
        return packed & ((1 << 232) - 1);
    }

    // ================================================================ overrides

    /// @inheritdoc AccessControlDefaultAdminRules
    function supportsInterface(bytes4 interfaceId) public view override returns (bool) {
        return super.supportsInterface(interfaceId);
    }
}
