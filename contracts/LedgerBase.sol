// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Hashes} from "@openzeppelin/contracts/utils/cryptography/Hashes.sol";

import {ICoalitionPoints} from "./ICoalitionPoints.sol";
import {CalendarMonths} from "./CalendarMonths.sol";

/// @title LedgerBase
/// @notice The ledger's storage and the internals both of its contracts share: the ledger
/// (`CoalitionPoints`, the hot paths) and its operator module (`CoalitionPointsAdmin`), which
/// the ledger reaches by `delegatecall` for every function it does not have itself. Both
/// inherit this one contract and declare no state of their own, so their storage layouts are
/// the same by construction.
/// @dev Storage layout, chosen for gas (see docs/contracts.md):
/// - each member has one packed `Account` slot holding its tier window and its newest
///   expiry bucket (the "tail"), so an earn to an existing member writes one slot;
/// - older buckets sit in a per-member ring sorted by expiry month, swept from the front;
/// - earns are not stored one by one: each batch commits a Merkle root of its accepted
///   earns, and a reversal proves its earn against that root.
abstract contract LedgerBase is ICoalitionPoints, ERC20, AccessControlDefaultAdminRules, Pausable, EIP712 {
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
    /// @notice Shortest notice period outside development chains (SPEC section 3).
    uint256 public constant MIN_NOTICE_PERIOD = 7 days;
    /// @notice Kinds named by `OperationRejected`.
    uint8 public constant KIND_EARN = 1;
    uint8 public constant KIND_REDEEM = 2;
    uint8 public constant KIND_REVERSE = 3;
    uint8 public constant KIND_AWARD = 4;
    /// @notice Highest award reason code (1 bonus .. 7 retro_claim).
    uint8 public constant MAX_REASON = 7;
    /// @notice Kinds of scheduled change named by `ChangeScheduled`.
    uint8 public constant CHANGE_EXPIRY = 1;
    uint8 public constant CHANGE_TIERS = 2;
    uint8 public constant CHANGE_POINT_VALUE = 3;
    uint8 public constant CHANGE_RATE = 4;
    uint8 public constant CHANGE_SIGNER = 5;
    uint8 public constant CHANGE_PRICES = 6;

    bytes32 public constant EARN_TYPEHASH = keccak256(
        "Earn(uint32 partnerId,address member,uint256 spend,uint256 maxPoints,bytes32 receiptRef,uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant REDEEM_TYPEHASH = keccak256(
        "Redeem(address member,uint32 partnerId,uint256 points,bytes32 receiptRef,uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant REVERSE_TYPEHASH = keccak256(
        "Reverse(uint32 partnerId,bytes32 earnLeaf,uint256 points,bytes32 receiptRef,uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant AWARD_TYPEHASH = keccak256(
        "Award(uint32 partnerId,address member,uint256 points,uint8 reason,bytes32 receiptRef,uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant MIGRATE_TYPEHASH =
        keccak256("Migrate(address from,address to,uint256 nonce,uint256 deadline)");
    bytes32 public constant ROTATE_SIGNER_TYPEHASH =
        keccak256("RotateSigner(uint32 partnerId,address newSigner,uint256 nonce,uint256 deadline)");
    bytes32 public constant CANCEL_CHANGE_TYPEHASH = keccak256("CancelChange(uint32 partnerId,uint256 changeId)");

    uint256 internal constant _BPS = 10_000;
    uint256 internal constant _LANE_MAX = type(uint56).max;
    // Live buckets per member: after a sweep every bucket expires in a distinct month of
    // current .. current + MAX_EXPIRY_MONTHS or never, so the ring (all but the tail) holds at
    // most MAX_EXPIRY_MONTHS + 1. Reaching the bound is a rejection, never a revert.
    uint16 internal constant _MAX_RING = MAX_EXPIRY_MONTHS + 1;
    // Low bits of a committed earn root that hold the batch's expiry month (see `_earnRoots`).
    uint256 internal constant _EXPIRY_BITS = 0xFFFFFF;
    // `Account.flags` bit 1 (r2): the member owes points (read `_debts` only then).
    uint8 internal constant _DEBT_FLAG = 2;
    // Kind of the scheduled debt-policy change (r2); internal, so no module carries a getter.
    uint8 internal constant _CHANGE_DEBT_POLICY = 7;
    // (r2) Campaigns: the largest bonus multiplier (100x, as tier multipliers), and the EIP-712
    // type of an earn that names a campaign (`EARN_TYPEHASH` stays for those that do not).
    uint256 internal constant _MAX_BONUS_BPS = 100 * _BPS;
    bytes32 internal constant _CAMPAIGN_EARN_TYPEHASH = keccak256(
        "CampaignEarn(uint32 partnerId,address member,uint256 spend,uint256 maxPoints,uint64 campaignId,bytes32 receiptRef,uint256 nonce,uint256 deadline)"
    );

    /// @dev One slot per member. `tail*` is the newest (latest-expiring) bucket; the ring
    /// holds the older ones, sorted by expiry ascending. Invariant: tailPoints == 0 implies
    /// count == 0. `windowTotal` is the points earned in months (earnMonth-11 .. earnMonth).
    /// `flags` bit 0: the operator assigned a tier (read `_assignedTiers` only then); bit 1
    /// (r2): the member has a debt (read `_debts` only then).
    struct Account {
        uint24 earnMonth;
        uint56 earnedInMonth;
        uint56 windowTotal;
        uint24 tailExpiry;
        uint56 tailPoints;
        uint16 head;
        uint16 count;
        uint8 flags;
    }

    struct PartnerPrices {
        uint128 issue;
        uint128 redemption;
    }

    /// @dev A tier the operator assigned to a member until a time (r2).
    struct AssignedTier {
        uint8 tier;
        uint64 until;
    }

    struct PartnerCore {
        address signer;
        bool active;
        uint32 ratePoints;
        uint32 ratePerMinorUnits;
        bytes3 currency;
    }

    /// @dev Split from the burn totals so an earn touches this slot and a redemption the
    /// other. `activeFrom`: first second the partner may issue (added + notice period).
    struct IssueTotals {
        uint128 allowance;
        uint88 issued;
        uint40 activeFrom;
    }

    struct BurnTotals {
        uint128 reversed;
        uint128 redeemed;
    }

    /// @dev A programme change waiting for its notice period. `data` is the ABI-encoded
    /// argument list of the change; `state` 1 pending, 2 applied, 3 cancelled.
    struct Change {
        uint8 kind;
        uint8 state;
        uint32 partnerId;
        uint64 effectiveAt;
        bytes data;
    }

    /// @dev A slice of a member's points with one expiry month (memory only).
    struct Slice {
        uint24 expiry;
        uint256 points;
    }

    mapping(address member => Account) internal _accounts;
    mapping(address member => mapping(uint16 index => uint256 packed)) internal _ring;
    // Points earned per month, four uint64 lanes per slot, keyed by month / 4.
    mapping(address member => mapping(uint256 group => uint256 lanes)) internal _earnedHist;
    // Live points per expiry month; for a past month, what expired at its end (breakage).
    mapping(uint256 expiryMonth => uint256) internal _supplyByExpiry;
    uint24 internal _maxDatedExpiry;

    mapping(uint32 partnerId => PartnerCore) internal _partners;
    mapping(uint32 partnerId => IssueTotals) internal _issueTotals;
    mapping(uint32 partnerId => BurnTotals) internal _burnTotals;
    uint32 internal _partnerCount;

    mapping(uint32 partnerId => mapping(uint256 word => uint256 bits)) internal _partnerNonces;
    mapping(address member => mapping(uint256 word => uint256 bits)) internal _memberNonces;

    // Per earn batch: the Merkle root of its accepted earns with its low 24 bits replaced by
    // the batch's expiry month (one block, one policy: every earn of a batch expires in the
    // same month). A reversal proves its earn against the high 232 bits, which still take
    // 2^232 work to match, and learns the earn's expiry from the low ones (issue 10, finding 3).
    mapping(uint64 batchId => bytes32 rootAndExpiry) internal _earnRoots;
    uint64 internal _earnBatchCount;
    mapping(bytes32 earnLeaf => uint256) internal _reversedOf;

    Tier[] internal _tiers;
    uint16 internal _expiryMonths = 12;
    bool internal _transfersEnabled;
    uint256 internal _pointValue;
    bytes3 internal _pointCurrency;

    mapping(address member => AssignedTier) internal _assignedTiers;
    mapping(uint32 partnerId => uint256) internal _awarded;
    // Per-partner settlement prices (r2), minor units of the point value's currency per point;
    // 0 means the coalition's point value.
    mapping(uint32 partnerId => PartnerPrices) internal _prices;

    uint64 internal _noticePeriod;
    uint256 internal _changeCount;
    mapping(uint256 changeId => Change) internal _changes;
    // Migration (r2): an address's first address (0: itself), and where the points of each
    // first address are now, so that a reversal follows an earn's points to their holder.
    mapping(address member => address first) internal _originOf;
    mapping(address first => address member) internal _currentOf;
    // Refunds (r2): per redemption batch the Merkle root of its accepted redemptions (each
    // leaf carries the latest expiry month the redemption burnt), what each leaf has had
    // refunded, and each partner's refunded total.
    mapping(uint64 batchId => bytes32 root) internal _redeemRoots;
    uint64 internal _redeemBatchCount;
    mapping(bytes32 redemptionLeaf => uint256) internal _refundedOf;
    mapping(uint32 partnerId => uint256) internal _refunded;
    // Debt (r2): points a reversal took beyond what the holder had, owed by that address and
    // paid first by points later issued or refunded to it; the sum of all; the operator's
    // policy (false: such a reversal is rejected).
    mapping(address member => uint256) internal _debts;
    uint256 internal _totalDebt;
    bool internal _debtAllowed;
    // Campaigns (r2): their terms (one slot) and budget use (one slot: what an earn writes).
    mapping(uint64 campaignId => CampaignTerms) internal _campaigns;
    mapping(uint64 campaignId => uint256 spent) internal _campaignSpent;
    uint64 internal _campaignCount;

    /// @param name_ ERC-20 name; @param symbol_ ERC-20 symbol.
    /// @param admin the coalition operator; @param adminDelay seconds a handover waits.
    constructor(string memory name_, string memory symbol_, address admin, uint48 adminDelay)
        ERC20(name_, symbol_)
        AccessControlDefaultAdminRules(adminDelay, admin)
        EIP712("Coalition Points", "1")
    {}

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
    function _credit(address member, uint24 expiry, uint256 points, uint24 cur) internal {
        Account memory a = _accounts[member];
        // A bucket older than the tail goes into the ring: sweep first, so the ring holds live
        // months only and stays within _MAX_RING whatever policy changes, transfers and time
        // came before (issue 10, finding 4: _insert never swept, and the ring filled up).
        if (a.tailPoints != 0 && expiry < a.tailExpiry) _sweep(a, member, cur);
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
    function _pushTail(Account memory a, address member, uint24 cur) internal {
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
    function _insert(Account memory a, address member, uint24 expiry, uint256 points) internal {
        mapping(uint16 => uint256) storage ring = _ring[member];
        uint16 i = a.count;
        // Scan from the newest; `_credit` swept the expired buckets from the front first.
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
    function _take(address member, uint256 value, uint24 cur) internal returns (Slice[] memory slices) {
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
    function _sweep(Account memory a, address member, uint24 cur) internal {
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

    function _emitExpired(address member, uint24 expiry, uint256 points) internal {
        // `_supplyByExpiry[expiry]` is left as it is: for a past month it records breakage.
        emit Expired(member, keccak256(abi.encode(member, expiry)), points, expiry);
        emit Transfer(member, address(0), points);
    }

    /// @dev Pays `member`'s debt first from `points` being issued or refunded to it by
    /// `partnerId`'s operation `receiptRef`; returns the points left to credit. Only for a
    /// member whose flag says it owes (the caller checks `a.flags & _DEBT_FLAG`, and writes
    /// `a` back: the flag clears when the debt is paid).
    function _repay(Account memory a, address member, uint256 points, uint32 partnerId, bytes32 receiptRef)
        internal
        returns (uint256)
    {
        uint256 debt = _debts[member];
        uint256 paid = debt < points ? debt : points;
        unchecked {
            // paid <= debt <= _totalDebt
            _debts[member] = debt - paid;
            _totalDebt -= paid;
        }
        if (paid == debt) a.flags &= ~_DEBT_FLAG;
        emit DebtRepaid(partnerId, member, receiptRef, paid);
        return points - paid;
    }

    // ================================================================ tiers

    /// @dev Moves the member's tier window to `cur` in memory; returns the month and points
    /// to flush into the history (written only if the earn is applied; 0 points: none).
    function _rollWindow(Account memory a, address member, uint24 cur)
        internal
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
    function _unearn(address member, uint256 month, uint256 points) internal {
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
    function _addHist(address member, uint256 month, uint256 points, bool add) internal returns (uint256 changed) {
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
    function _histSum(address member, uint256 from, uint256 toExclusive) internal view returns (uint256 sum) {
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

    function _tierIndex(uint256 qualifying) internal view returns (uint256 i) {
        i = _tiers.length - 1;
        while (i != 0 && qualifying < _tiers[i].threshold) --i;
    }

    /// @dev The member's tier: the earned one, or the assigned one while it runs if higher
    /// (an assigned tier beyond a since shortened table is its top tier).
    function _memberTier(Account memory a, address member, uint256 qualifying) internal view returns (uint256 i) {
        i = _tierIndex(qualifying);
        if (a.flags & 1 != 0) {
            AssignedTier memory t = _assignedTiers[member];
            if (block.timestamp < t.until) {
                uint256 top = _tiers.length - 1;
                uint256 assigned = t.tier > top ? top : t.tier;
                if (assigned > i) i = assigned;
            }
        }
    }

    // ================================================================ helpers

    function _expiryFor(uint24 cur) internal view returns (uint24) {
        uint16 n = _expiryMonths;
        return n == 0 ? NEVER : cur + n;
    }

    function _checkPartner(PartnerCore memory p, uint32 partnerId) internal pure returns (bytes memory) {
        if (p.signer == address(0)) return abi.encodeWithSelector(UnknownPartner.selector, partnerId);
        if (!p.active) return abi.encodeWithSelector(PartnerSuspended.selector, partnerId);
        return "";
    }

    function _checkFresh(mapping(uint256 => uint256) storage nonces, address signer, uint256 nonce, uint256 deadline)
        internal
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

    function _spendNonce(mapping(uint256 => uint256) storage nonces, uint256 nonce) internal {
        nonces[nonce >> 8] |= 1 << (nonce & 0xff);
    }

    function _checkSigner(bytes32 structHash, bytes32 r, bytes32 vs, address expected)
        internal
        view
        returns (bytes memory)
    {
        (address recovered, ECDSA.RecoverError status,) = ECDSA.tryRecover(_hashTypedDataV4(structHash), r, vs);
        if (status != ECDSA.RecoverError.NoError || recovered != expected) {
            return abi.encodeWithSelector(InvalidSignature.selector, expected, recovered);
        }
        return "";
    }

    function _knownPartner(uint32 partnerId) internal view returns (PartnerCore storage p) {
        p = _partners[partnerId];
        if (p.signer == address(0)) revert UnknownPartner(partnerId);
    }

    function _checkPartnerSettings(address signer, uint32 ratePoints, uint32 ratePerMinorUnits) internal pure {
        if (signer == address(0)) revert InvalidSigner(signer);
        if (ratePoints == 0 || ratePerMinorUnits == 0) revert InvalidRate(ratePoints, ratePerMinorUnits);
    }

    /// @dev Builds the root of the first `n` leaves with OpenZeppelin's sorted-pair hash,
    /// carrying an odd node up a level, so `MerkleProof.verify` accepts its proofs.
    function _merkleRoot(bytes32[] memory nodes, uint256 n) internal pure returns (bytes32) {
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

    /// @dev Whether crediting a new month to `a` could not find room in the ring even after
    /// sweeping: the ring is at its bound and its earliest bucket is still live. Unreachable
    /// by the argument at `_MAX_RING`; checked so that it would be a rejection, not a revert.
    /// @dev Where the points credited to `member` are now: the address its migrations led to.
    function _holder(address member) internal view returns (address) {
        address first = _originOf[member];
        address current = _currentOf[first == address(0) ? member : first];
        return current == address(0) ? member : current;
    }

    function _at(Account memory a, uint16 offset) internal pure returns (uint16) {
        unchecked {
            return a.head + offset; // wraps by design: ring indices are modulo 2^16
        }
    }

    function _pack(uint24 expiry, uint256 points) internal pure returns (uint256) {
        return (uint256(expiry) << 232) | points;
    }

    function _unpack(uint256 packed) internal pure returns (uint24 expiry, uint256 points) {
        return (uint24(packed >> 232), packed & ((1 << 232) - 1));
    }

    function _unpackPoints(uint256 packed) internal pure returns (uint256) {
        return packed & ((1 << 232) - 1);
    }

    // ================================================================ overrides

    /// @inheritdoc AccessControlDefaultAdminRules
    function supportsInterface(bytes4 interfaceId) public view override returns (bool) {
        return super.supportsInterface(interfaceId);
    }
}
