// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ICoalitionPoints} from "../ICoalitionPoints.sol";
import {ILedger} from "./ILedger.sol";
import {vm, Vm} from "./Vm.sol";

/// @notice The handler's model of the ledger (revision 2), written from docs/contracts.md and
/// the SPEC, not from the contract: each member's expiry buckets (with the expired ones the
/// ledger has not swept yet), qualifying points per month, assigned tiers, partners with their
/// signer keys and totals, scheduled changes, nonces, and every accepted earn and award (for
/// reversals). The `_check*` functions say what the ledger must answer to an operation (the
/// first failing check, in the contract's documented order); the `_apply*` ones record an
/// accepted operation.
abstract contract LedgerGhost {
    uint24 internal constant NEVER = type(uint24).max;
    uint256 internal constant BPS = 10_000;
    uint256 internal constant MAX_SPEND = type(uint64).max;
    uint256 internal constant MAX_OP_POINTS = type(uint48).max;
    uint32 internal constant MAX_PARTNERS = 5;
    uint256 internal constant ACTORS = 6;
    uint256 internal constant NOTICE = 7 days;
    uint8 internal constant MAX_REASON = 7;
    uint8 internal constant MAX_TIERS = 8;
    uint16 internal constant MAX_EXPIRY_MONTHS = 120;
    uint8 internal constant CHANGE_EXPIRY = 1;
    uint8 internal constant CHANGE_TIERS = 2;
    uint8 internal constant CHANGE_POINT_VALUE = 3;
    uint8 internal constant CHANGE_RATE = 4;
    uint8 internal constant CHANGE_SIGNER = 5;
    uint8 internal constant CHANGE_PRICES = 6;
    uint8 internal constant CHANGE_DEBT_POLICY = 7;
    uint256 internal constant BAD_KEY = 0xBAD;

    // EIP-712 types as partners/signing.py writes them (independent of the contract's constants).
    bytes32 internal constant EARN_TYPEHASH = keccak256(
        "Earn(uint32 partnerId,address member,uint256 spend,uint256 maxPoints,bytes32 receiptRef,uint256 nonce,uint256 deadline)"
    );
    bytes32 internal constant CAMPAIGN_EARN_TYPEHASH = keccak256(
        "CampaignEarn(uint32 partnerId,address member,uint256 spend,uint256 maxPoints,uint64 campaignId,bytes32 receiptRef,uint256 nonce,uint256 deadline)"
    );
    bytes32 internal constant CAMPAIGN_TYPEHASH = keccak256(
        "Campaign(uint32 partnerId,uint40 start,uint40 end,uint24 bonusBps,uint48 fixedBonus,uint64 minSpend,uint8 tierMask,uint128 budget,uint256 nonce,uint256 deadline)"
    );
    uint256 internal constant MAX_BONUS_BPS = 1_000_000;
    bytes32 internal constant REDEEM_TYPEHASH = keccak256(
        "Redeem(address member,uint32 partnerId,uint256 points,bytes32 receiptRef,uint256 nonce,uint256 deadline)"
    );
    bytes32 internal constant REVERSE_TYPEHASH = keccak256(
        "Reverse(uint32 partnerId,bytes32 earnLeaf,uint256 points,bytes32 receiptRef,uint256 nonce,uint256 deadline)"
    );
    bytes32 internal constant AWARD_TYPEHASH = keccak256(
        "Award(uint32 partnerId,address member,uint256 points,uint8 reason,bytes32 receiptRef,uint256 nonce,uint256 deadline)"
    );
    bytes32 internal constant REFUND_TYPEHASH = keccak256(
        "Refund(uint32 partnerId,bytes32 redemptionLeaf,uint256 points,bytes32 receiptRef,uint256 nonce,uint256 deadline)"
    );
    bytes32 internal constant MIGRATE_TYPEHASH = keccak256("Migrate(address from,address to,uint256 nonce,uint256 deadline)");
    bytes32 internal constant ROTATE_SIGNER_TYPEHASH =
        keccak256("RotateSigner(uint32 partnerId,address newSigner,uint256 nonce,uint256 deadline)");
    bytes32 internal constant CANCEL_CHANGE_TYPEHASH = keccak256("CancelChange(uint32 partnerId,uint256 changeId)");

    struct GhostPartner {
        uint256 key; // the signer's private key; 0: no such partner
        uint256 retiredKey; // the key before the last rotation (must no longer work)
        address signer; // vm.addr(key), kept to spare the invariant a key derivation per partner
        bool active;
        uint32 ratePoints;
        uint32 ratePerMinorUnits;
        uint256 allowance;
        uint256 issued;
        uint256 reversed;
        uint256 redeemed;
        uint256 awarded;
        uint256 activeFrom;
        uint128 issuePrice;
        uint128 redemptionPrice;
        uint256 refunded; // points given back of redemptions at it (r2)
    }

    /// @dev What the ledger's account word must say besides the buckets.
    struct GhostMember {
        bool earned; // earnMonth != 0: has earned since it last migrated away
        bool flagged; // flags bit 0: an assignment with a non-zero `until`
        uint8 tier;
        uint64 until;
    }

    struct GhostChange {
        uint8 kind;
        uint8 state; // 1 pending, 2 applied, 3 cancelled
        uint32 partnerId;
        uint64 effectiveAt;
        uint256 a; // months / point value / ratePoints / new signer's key / issue price
        uint256 b; // currency / ratePerMinorUnits / redemption price
    }

    /// @dev An accepted earn (spend > 0) or award (spend 0), for reversals.
    struct GhostEarn {
        uint32 partnerId;
        uint64 batchId;
        uint8 index;
        address member;
        bytes32 receiptRef;
        uint256 spend;
        uint256 points;
        uint24 earnMonth;
        uint24 expiry;
        uint256 bonus; // (r2) the campaign bonus included in `points`
    }

    /// @dev A registered campaign (r2) and the bonus points it issued.
    struct GhostCampaign {
        ICoalitionPoints.CampaignTerms terms;
        uint256 spent;
    }

    /// @dev An accepted redemption, for refunds (r2): `expiry` is the latest expiry month it
    /// burnt (the ghost's), which its committed leaf must carry.
    struct GhostRedemption {
        uint32 partnerId;
        uint64 batchId;
        uint32 index;
        address member;
        bytes32 receiptRef;
        uint256 points;
        uint24 expiry;
    }

    ILedger public ledger;
    bytes32 internal _domainSeparator;
    address[ACTORS] public actors;
    uint256[ACTORS] internal _actorKeys;
    address public constant stranger = address(0x5757);
    address[2] public operators;
    uint256 public adminIndex;
    bool public hasPending;
    uint256 public pendingIndex;

    // time
    uint256 public ghostTime;
    uint24 public ghostMonth;

    // members
    mapping(address => uint24[]) internal _months; // expiry months with points, ascending (incl. unswept expired)
    mapping(address => mapping(uint24 => uint256)) public ghostBucket;
    mapping(address => mapping(uint256 => uint256)) public ghostEarned; // month -> qualifying points
    mapping(address => GhostMember) internal _members;
    // Migrations: an address's first address (0: itself), and where each first address's
    // points are now (a reversal follows them there).
    mapping(address => address) internal _originOf;
    mapping(address => address) internal _currentOf;
    mapping(address => mapping(address => uint256)) public ghostApproval;
    mapping(address => mapping(uint256 => bool)) internal _memberNonceUsed;
    // (r2) debt: what reversals took beyond a holder's points, paid first by later issues and
    // refunds; the policy (off: such a reversal is rejected).
    mapping(address => uint256) public ghostDebt;
    uint256 public ghostTotalDebt;
    bool public ghostDebtAllowed;

    // expiry (breakage): swept per month, plus what is still unswept in the buckets
    mapping(uint24 => uint256) internal _sweptIn;
    uint256 internal _sweptTotal;
    uint24[] internal _monthsSeen;
    mapping(uint24 => bool) internal _monthSeen;

    // partners
    mapping(uint32 => GhostPartner) internal _partners;
    uint32 public ghostPartnerCount;
    mapping(uint32 => mapping(uint256 => bool)) internal _partnerNonceUsed;
    /// @notice Per partner: the most it could ever have issued (allowances granted, as read
    /// from the ledger before each `setAllowance`, plus what reversals gave back).
    mapping(uint32 => uint256) public ghostAllowedTotal;
    /// @notice Per partner: points of `Earned`/`Awarded` events whose operation the handler
    /// signed with the partner's current key, and of those it signed with any other key.
    mapping(uint32 => uint256) public ghostSignedIssued;
    mapping(uint32 => uint256) public ghostForgedIssued;

    // programme settings
    ICoalitionPoints.Tier[] internal _ghostTiers;
    uint16 public ghostExpiryMonths = 12;
    bool public ghostPaused;
    bool public ghostTransfers;
    uint256 public ghostPointValue;
    bytes3 public ghostPointCurrency;

    // scheduled changes
    mapping(uint256 => GhostChange) internal _changes;
    mapping(uint256 => ICoalitionPoints.Tier[]) internal _changeTiers;
    uint256 public ghostChangeCount;

    // earns and awards, for reversals; leaves per committed batch, for proofs
    GhostEarn[] internal _earns;
    mapping(uint64 => bytes32[]) internal _batchLeaves;
    uint64 public ghostBatchCount;
    mapping(bytes32 => uint256) public ghostReversedOf;

    // redemptions, for refunds (r2); leaves per committed redemption batch, for proofs
    GhostRedemption[] internal _redemptions;
    mapping(uint64 => bytes32[]) internal _redeemLeaves;
    uint64 public ghostRedeemBatchCount;
    mapping(bytes32 => uint256) public ghostRefundedOf;

    uint256 internal _nonce;

    // campaigns (r2): id i + 1 is _ghostCampaigns[i]
    GhostCampaign[] internal _ghostCampaigns;
    mapping(bytes32 receiptRef => bool) internal _forged; // campaign earns signed as plain earns

    // the audit trail (SPEC section 4): balances and breakage replayed from the ledger's events
    bytes32 internal constant TRANSFER_EVENT = keccak256("Transfer(address,address,uint256)");
    bytes32 internal constant EXPIRED_EVENT = keccak256("Expired(address,bytes32,uint256,uint32)");
    mapping(address => int256) public eventBalance;
    uint256 public expiredEventTotal;

    // ================================================================ time

    function _warpToTime(uint256 t) internal {
        require(t >= ghostTime, "ghost: time goes forward only");
        vm.warp(t);
        ghostTime = t;
        // The month by days_from_civil, stepping forward (independent of the ledger's monthOf).
        while (_monthStart(ghostMonth + 1) <= t) ++ghostMonth;
        require(ledger.currentMonth() == ghostMonth, "warp: the ledger's month differs");
    }

    /// @dev Day 15 of `month`, noon (far from both ends of the month), plus `extra` seconds.
    function _warpToMonth(uint256 month) internal {
        _warpToTime(_monthStart(month) + 14 days + 12 hours);
    }

    function _monthStart(uint256 month) internal pure returns (uint256) {
        return _daysFromCivil(month / 12, month % 12 + 1, 1) * 86_400;
    }

    /// @dev Howard Hinnant's days_from_civil (the ledger uses civil_from_days).
    function _daysFromCivil(uint256 y, uint256 m, uint256 d) internal pure returns (uint256) {
        if (m <= 2) y -= 1;
        uint256 era = y / 400;
        uint256 yoe = y - era * 400;
        uint256 doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
        uint256 doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146_097 + doe - 719_468;
    }

    function _expiryFor() internal view returns (uint24) {
        return ghostExpiryMonths == 0 ? NEVER : ghostMonth + ghostExpiryMonths;
    }

    // ================================================================ buckets

    /// @dev The ledger sweeps a member's expired buckets whenever it credits a month other than
    /// its newest one, takes points from it, runs `expire` on it or migrates it away.
    function _sweep(address member) internal {
        uint24[] storage ms = _months[member];
        uint256 k;
        while (k < ms.length && ms[k] < ghostMonth) {
            uint256 p = ghostBucket[member][ms[k]];
            (_sweptIn[ms[k]], _sweptTotal) = (_sweptIn[ms[k]] + p, _sweptTotal + p);
            ghostBucket[member][ms[k]] = 0;
            ++k;
        }
        if (k == 0) return;
        uint256 n = ms.length;
        for (uint256 i = k; i < n; ++i) {
            ms[i - k] = ms[i];
        }
        for (uint256 i = 0; i < k; ++i) {
            ms.pop();
        }
    }

    function _credit(address member, uint24 expiry, uint256 points) internal {
        uint24[] storage ms = _months[member];
        if (ms.length != 0 && ms[ms.length - 1] != expiry) _sweep(member);
        uint256 i = ms.length;
        while (i > 0 && ms[i - 1] > expiry) --i;
        if (i == 0 || ms[i - 1] != expiry) {
            ms.push(0);
            for (uint256 j = ms.length - 1; j > i; --j) {
                ms[j] = ms[j - 1];
            }
            ms[i] = expiry;
        }
        ghostBucket[member][expiry] += points;
        if (expiry != NEVER && !_monthSeen[expiry]) {
            _monthSeen[expiry] = true;
            _monthsSeen.push(expiry);
        }
    }

    /// @dev Takes `points` live points, earliest expiry first; returns them as (months, points).
    function _take(address member, uint256 points) internal returns (uint24[] memory es, uint256[] memory ps) {
        uint24[] storage ms = _months[member];
        if (ms.length != 0) _sweep(member);
        (es, ps) = (new uint24[](ms.length), new uint256[](ms.length));
        uint256 n;
        uint256 emptied;
        while (points != 0 && n < ms.length) {
            uint256 have = ghostBucket[member][ms[n]];
            uint256 part = have < points ? have : points;
            ghostBucket[member][ms[n]] = have - part;
            (es[n], ps[n]) = (ms[n], part);
            if (part == have) ++emptied;
            ++n;
            points -= part;
        }
        require(points == 0, "ghost: took more than the balance");
        if (emptied != 0) {
            uint256 len = ms.length;
            for (uint256 i = emptied; i < len; ++i) {
                ms[i - emptied] = ms[i];
            }
            for (uint256 i = 0; i < emptied; ++i) {
                ms.pop();
            }
        }
        assembly ("memory-safe") {
            mstore(es, n)
            mstore(ps, n)
        }
    }

    function _move(address from, address to, uint256 amount) internal {
        (uint24[] memory es, uint256[] memory ps) = _take(from, amount);
        for (uint256 i = 0; i < es.length; ++i) {
            _credit(to, es[i], ps[i]);
        }
    }

    /// @dev (r2) Points issued or refunded to `member` pay its debt first; returns what is
    /// left for its balance.
    function _repay(address member, uint256 points) internal returns (uint256) {
        uint256 debt = ghostDebt[member];
        uint256 paid = debt < points ? debt : points;
        ghostDebt[member] = debt - paid;
        ghostTotalDebt -= paid;
        return points - paid;
    }

    /// @dev Whether `migrate` must refuse `member` as its target (`AccountInUse`): it holds
    /// or held points, or took part in a migration.
    function _inUse(address member) internal view returns (bool) {
        GhostMember storage g = _members[member];
        if (_originOf[member] != address(0) || _currentOf[member] != address(0)) return true;
        return g.earned || g.flagged || _months[member].length != 0 || ghostDebt[member] != 0;
    }

    /// @dev Where the points credited to `member` are now, after its migrations.
    function _holder(address member) internal view returns (address) {
        address first = _originOf[member];
        address current = _currentOf[first == address(0) ? member : first];
        return current == address(0) ? member : current;
    }

    /// @dev Migration: sweep `from`, then its buckets, qualifying window, earned flag and
    /// assigned tier become `to`'s (`to` is not in use).
    function _migrate(address from, address to) internal {
        if (_months[from].length != 0) _sweep(from);
        uint24[] memory ms = _months[from];
        for (uint256 i = 0; i < ms.length; ++i) {
            _months[to].push(ms[i]);
            ghostBucket[to][ms[i]] = ghostBucket[from][ms[i]];
            ghostBucket[from][ms[i]] = 0;
        }
        delete _months[from];
        (ghostDebt[to], ghostDebt[from]) = (ghostDebt[from], 0); // the debt moves too (r2)
        for (uint256 m = ghostMonth - 11; m <= ghostMonth; ++m) {
            (ghostEarned[to][m], ghostEarned[from][m]) = (ghostEarned[from][m], 0);
        }
        GhostMember memory f = _members[from];
        GhostMember storage t = _members[to];
        (t.earned, t.flagged) = (f.earned, f.flagged);
        if (f.flagged) (t.tier, t.until) = (f.tier, f.until);
        delete _members[from];
        if (!f.flagged) (_members[from].tier, _members[from].until) = (f.tier, f.until);
        address first = _originOf[from] == address(0) ? from : _originOf[from];
        (_currentOf[first], _originOf[to]) = (to, first);
    }

    // ================================================================ tiers

    function _tierIndex(address member) internal view returns (uint256 i) {
        uint256 q = ghostQualifying(member);
        for (uint256 j = 0; j < _ghostTiers.length; ++j) {
            if (q >= _ghostTiers[j].threshold) i = j;
        }
        GhostMember storage g = _members[member];
        if (g.flagged && ghostTime < g.until) {
            uint256 top = _ghostTiers.length - 1;
            uint256 assigned = g.tier > top ? top : g.tier;
            if (assigned > i) i = assigned;
        }
    }

    // ================================================================ operations: checks

    function _partnerError(uint32 pid) internal view returns (bytes4) {
        GhostPartner storage p = _partners[pid];
        if (p.key == 0) return ICoalitionPoints.UnknownPartner.selector;
        if (!p.active) return ICoalitionPoints.PartnerSuspended.selector;
        return 0;
    }

    /// @dev An earn, in the contract's order of checks; `key` signed it. Returns the points
    /// with the campaign bonus (r2), and the bonus.
    function _checkEarn(ICoalitionPoints.EarnOp memory op, uint256 key) internal view returns (bytes4, uint256, uint256) {
        bytes4 err = _partnerError(op.partnerId);
        if (err != 0) return (err, 0, 0);
        GhostPartner storage p = _partners[op.partnerId];
        if (ghostTime < p.activeFrom) return (ICoalitionPoints.PartnerNotYetActive.selector, 0, 0);
        if (op.member == address(0)) return (ICoalitionPoints.InvalidMember.selector, 0, 0);
        if (op.spend == 0 || op.spend > MAX_SPEND) return (ICoalitionPoints.AmountOutOfRange.selector, 0, 0);
        if (ghostTime > op.deadline) return (ICoalitionPoints.SignatureExpired.selector, 0, 0);
        if (_partnerNonceUsed[op.partnerId][op.nonce]) return (ICoalitionPoints.NonceAlreadyUsed.selector, 0, 0);
        uint64 cid = op.campaignId;
        if (cid != 0 && (cid > _ghostCampaigns.length || _ghostCampaigns[cid - 1].terms.partnerId != op.partnerId)) {
            return (ICoalitionPoints.UnknownCampaign.selector, 0, 0);
        }
        // An earn naming a campaign but signed as a plain `Earn` is not the partner's (r2).
        if (key != p.key || _forged[op.receiptRef]) return (ICoalitionPoints.InvalidSignature.selector, 0, 0);
        uint256 tier = _tierIndex(op.member);
        uint256 points =
            op.spend * p.ratePoints * _ghostTiers[tier].multiplierBps / (uint256(p.ratePerMinorUnits) * BPS);
        if (points == 0) return (ICoalitionPoints.ZeroPoints.selector, 0, 0);
        uint256 bonus = cid == 0 ? 0 : _campaignBonus(_ghostCampaigns[cid - 1], points, op.spend, tier);
        points += bonus;
        if (points > MAX_OP_POINTS) return (ICoalitionPoints.AmountOutOfRange.selector, 0, 0);
        if (points > op.maxPoints) return (ICoalitionPoints.MaxPointsExceeded.selector, 0, 0);
        if (points > p.allowance) return (ICoalitionPoints.AllowanceExceeded.selector, 0, 0);
        return (0, points, bonus);
    }

    /// @dev (r2) A campaign's bonus for an earn of `base` points: in its window (start
    /// included, end excluded), from its minimum spend, for its tiers; within the budget left.
    function _campaignBonus(GhostCampaign storage c, uint256 base, uint256 spend, uint256 tier)
        internal
        view
        returns (uint256)
    {
        ICoalitionPoints.CampaignTerms storage t = c.terms;
        if (ghostTime < t.start || ghostTime >= t.end || spend < t.minSpend || (t.tierMask >> tier) & 1 == 0) return 0;
        uint256 bonus = base * t.bonusBps / BPS + t.fixedBonus;
        uint256 left = t.budget - c.spent;
        return bonus < left ? bonus : left;
    }

    function _applyEarn(ICoalitionPoints.EarnOp memory op, uint256 points, uint256 bonus) internal {
        GhostPartner storage p = _partners[op.partnerId];
        _partnerNonceUsed[op.partnerId][op.nonce] = true;
        uint256 credit = _repay(op.member, points);
        if (credit != 0) _credit(op.member, _expiryFor(), credit);
        ghostEarned[op.member][ghostMonth] += points - bonus; // a bonus never qualifies (r2)
        if (bonus != 0) _ghostCampaigns[op.campaignId - 1].spent += bonus;
        _members[op.member].earned = true;
        p.allowance -= points;
        p.issued += points;
    }

    function _checkAward(ICoalitionPoints.AwardOp memory op, uint256 key) internal view returns (bytes4) {
        bytes4 err = _partnerError(op.partnerId);
        if (err != 0) return err;
        GhostPartner storage p = _partners[op.partnerId];
        if (ghostTime < p.activeFrom) return ICoalitionPoints.PartnerNotYetActive.selector;
        if (op.member == address(0)) return ICoalitionPoints.InvalidMember.selector;
        if (op.points == 0 || op.points > MAX_OP_POINTS) return ICoalitionPoints.AmountOutOfRange.selector;
        if (op.reason == 0 || op.reason > MAX_REASON) return ICoalitionPoints.InvalidReason.selector;
        if (ghostTime > op.deadline) return ICoalitionPoints.SignatureExpired.selector;
        if (_partnerNonceUsed[op.partnerId][op.nonce]) return ICoalitionPoints.NonceAlreadyUsed.selector;
        if (key != p.key) return ICoalitionPoints.InvalidSignature.selector;
        if (op.points > p.allowance) return ICoalitionPoints.AllowanceExceeded.selector;
        return 0;
    }

    function _applyAward(ICoalitionPoints.AwardOp memory op) internal {
        GhostPartner storage p = _partners[op.partnerId];
        _partnerNonceUsed[op.partnerId][op.nonce] = true;
        uint256 credit = _repay(op.member, op.points);
        if (credit != 0) _credit(op.member, _expiryFor(), credit);
        p.allowance -= op.points;
        p.issued += op.points;
        p.awarded += op.points;
    }

    function _checkRedeem(ICoalitionPoints.RedeemOp memory op, uint256 key) internal view returns (bytes4) {
        bytes4 err = _partnerError(op.partnerId);
        if (err != 0) return err;
        if (op.member == address(0)) return ICoalitionPoints.InvalidMember.selector;
        if (op.points == 0 || op.points > MAX_OP_POINTS) return ICoalitionPoints.AmountOutOfRange.selector;
        if (ghostTime > op.deadline) return ICoalitionPoints.SignatureExpired.selector;
        if (_memberNonceUsed[op.member][op.nonce]) return ICoalitionPoints.NonceAlreadyUsed.selector;
        if (key == 0 || vm.addr(key) != op.member) return ICoalitionPoints.InvalidSignature.selector;
        if (ghostBalance(op.member) < op.points) return ICoalitionPoints.InsufficientPoints.selector;
        return 0;
    }

    /// @dev Returns the latest expiry month among the points burnt.
    function _applyRedeem(ICoalitionPoints.RedeemOp memory op) internal returns (uint24) {
        _memberNonceUsed[op.member][op.nonce] = true;
        _partners[op.partnerId].redeemed += op.points;
        (uint24[] memory es,) = _take(op.member, op.points);
        return es[es.length - 1];
    }

    /// @dev A refund of `g` (as the handler recorded it), with the record the op carries (its
    /// real fields, or a forged or misplaced one).
    function _checkRefund(ICoalitionPoints.RefundOp memory op, GhostRedemption memory g, uint256 key)
        internal
        view
        returns (bytes4)
    {
        bytes4 err = _partnerError(op.partnerId);
        if (err != 0) return err;
        if (op.points == 0 || op.points > MAX_OP_POINTS) return ICoalitionPoints.AmountOutOfRange.selector;
        if (ghostTime > op.deadline) return ICoalitionPoints.SignatureExpired.selector;
        if (_partnerNonceUsed[op.partnerId][op.nonce]) return ICoalitionPoints.NonceAlreadyUsed.selector;
        if (key != _partners[op.partnerId].key) return ICoalitionPoints.InvalidSignature.selector;
        // The record proves only as the redeeming partner's, with its own fields and place.
        ICoalitionPoints.RedemptionRecord memory r = op.redemption;
        if (
            op.partnerId != g.partnerId || r.batchId != g.batchId || r.index != g.index || r.member != g.member
                || r.receiptRef != g.receiptRef || r.points != g.points || r.expiryMonth != g.expiry
        ) return ICoalitionPoints.UnknownRedemption.selector;
        if (ghostRefundedOf[_redemptionLeaf(g)] + op.points > g.points) {
            return ICoalitionPoints.RefundExceedsRedemption.selector;
        }
        return 0;
    }

    /// @dev The points go to where the member's points are now, expiring with the latest month
    /// the redemption burnt, or a fresh earn's month once that one is over.
    function _applyRefund(ICoalitionPoints.RefundOp memory op, GhostRedemption memory g) internal returns (uint24 expiry) {
        _partnerNonceUsed[op.partnerId][op.nonce] = true;
        ghostRefundedOf[_redemptionLeaf(g)] += op.points;
        _partners[op.partnerId].refunded += op.points;
        expiry = g.expiry >= ghostMonth ? g.expiry : _expiryFor();
        address holder = _holder(g.member);
        uint256 credit = _repay(holder, op.points);
        if (credit != 0) _credit(holder, expiry, credit);
    }

    function _redemptionLeaf(GhostRedemption memory g) internal pure returns (bytes32) {
        return keccak256(abi.encode(g.partnerId, g.member, g.receiptRef, g.points, g.expiry, g.batchId, g.index));
    }

    /// @dev A reversal of `e` (as the handler recorded it), claiming `claimed` points for the
    /// earn (its real points, or a forged amount), in batch `batchId`.
    function _checkReverse(ICoalitionPoints.ReverseOp memory op, GhostEarn memory e, uint256 key)
        internal
        view
        returns (bytes4)
    {
        bytes4 err = _partnerError(op.partnerId);
        if (err != 0) return err;
        if (op.points == 0 || op.points > MAX_OP_POINTS) return ICoalitionPoints.AmountOutOfRange.selector;
        if (ghostTime > op.deadline) return ICoalitionPoints.SignatureExpired.selector;
        if (_partnerNonceUsed[op.partnerId][op.nonce]) return ICoalitionPoints.NonceAlreadyUsed.selector;
        if (key != _partners[op.partnerId].key) return ICoalitionPoints.InvalidSignature.selector;
        // The record proves only as the issuer's, with its own fields, in its own batch.
        ICoalitionPoints.EarnRecord memory r = op.earn;
        if (
            op.partnerId != e.partnerId || r.batchId != e.batchId || r.member != e.member || r.receiptRef != e.receiptRef
                || r.spend != e.spend || r.points != e.points || r.earnMonth != e.earnMonth || r.bonus != e.bonus
        ) return ICoalitionPoints.UnknownEarn.selector;
        if (e.expiry < ghostMonth) return ICoalitionPoints.EarnExpired.selector;
        if (ghostReversedOf[_leaf(e)] + op.points > e.points) return ICoalitionPoints.ReversalExceedsEarn.selector;
        // (r2) Short of points: the shortfall becomes debt under the policy, else rejected.
        if (!ghostDebtAllowed && ghostBalance(_holder(e.member)) < op.points) {
            return ICoalitionPoints.InsufficientPoints.selector;
        }
        return 0;
    }

    /// @return debt the points recorded as the holder's debt (r2).
    function _applyReverse(ICoalitionPoints.ReverseOp memory op, GhostEarn memory e) internal returns (uint256 debt) {
        GhostPartner storage p = _partners[op.partnerId];
        _partnerNonceUsed[op.partnerId][op.nonce] = true;
        uint256 done = ghostReversedOf[_leaf(e)];
        ghostReversedOf[_leaf(e)] = done + op.points;
        address holder = _holder(e.member);
        if (e.spend != 0) {
            // (r2) A campaign bonus never qualified: reversals take it back first.
            uint256 bonusLeft = e.bonus > done ? e.bonus - done : 0;
            uint256 unearned = op.points > bonusLeft ? op.points - bonusLeft : 0;
            uint256 earned = ghostEarned[holder][e.earnMonth];
            ghostEarned[holder][e.earnMonth] = earned - (unearned < earned ? unearned : earned);
        }
        uint256 restored = p.allowance + op.points;
        p.allowance = restored > type(uint128).max ? type(uint128).max : restored;
        p.reversed += op.points;
        ghostAllowedTotal[op.partnerId] += op.points;
        uint256 balance = ghostBalance(holder);
        debt = balance < op.points ? op.points - balance : 0;
        (ghostDebt[holder], ghostTotalDebt) = (ghostDebt[holder] + debt, ghostTotalDebt + debt);
        if (op.points != debt) _take(holder, op.points - debt); // nothing to burn: no sweep either
    }

    function _leaf(GhostEarn memory e) internal pure returns (bytes32) {
        if (e.bonus != 0) {
            return keccak256(abi.encode(e.partnerId, e.member, e.receiptRef, e.spend, e.points, e.earnMonth, e.bonus));
        }
        return keccak256(abi.encode(e.partnerId, e.member, e.receiptRef, e.spend, e.points, e.earnMonth));
    }

    /// @dev The proof of leaf `index` of a batch, for OpenZeppelin's sorted-pair MerkleProof
    /// with an odd node carried up a level (how the ledger builds its roots).
    function _proof(uint64 batchId, uint256 index) internal view returns (bytes32[] memory proof) {
        return _proofIn(_batchLeaves[batchId], index);
    }

    function _proofIn(bytes32[] memory nodes, uint256 index) internal pure returns (bytes32[] memory proof) {
        uint256 n = nodes.length;
        proof = new bytes32[](8);
        uint256 depth;
        while (n > 1) {
            if (index ^ 1 < n) proof[depth++] = nodes[index ^ 1];
            uint256 j;
            for (uint256 i = 0; i + 1 < n; i += 2) {
                (bytes32 a, bytes32 b) = (nodes[i], nodes[i + 1]);
                nodes[j++] = a < b ? keccak256(abi.encode(a, b)) : keccak256(abi.encode(b, a));
            }
            if (n & 1 == 1) nodes[j++] = nodes[n - 1];
            (n, index) = (j, index / 2);
        }
        assembly ("memory-safe") {
            mstore(proof, depth)
        }
    }

    // ================================================================ scheduled changes

    function _recordChange(uint8 kind, uint32 pid, uint256 a, uint256 b) internal returns (uint256 id) {
        id = ++ghostChangeCount;
        uint256 notice = ghostPartnerCount == 0 ? 0 : NOTICE;
        _changes[id] = GhostChange(kind, 1, pid, uint64(ghostTime + notice), a, b);
        if (notice == 0) _applyChange(id);
    }

    function _applyChange(uint256 id) internal {
        GhostChange storage c = _changes[id];
        c.state = 2;
        GhostPartner storage p = _partners[c.partnerId];
        if (c.kind == CHANGE_EXPIRY) {
            ghostExpiryMonths = uint16(c.a);
        } else if (c.kind == CHANGE_TIERS) {
            delete _ghostTiers;
            ICoalitionPoints.Tier[] storage table = _changeTiers[id];
            for (uint256 i = 0; i < table.length; ++i) {
                _ghostTiers.push(table[i]);
            }
        } else if (c.kind == CHANGE_POINT_VALUE) {
            (ghostPointValue, ghostPointCurrency) = (c.a, bytes3(uint24(c.b)));
        } else if (c.kind == CHANGE_RATE) {
            (p.ratePoints, p.ratePerMinorUnits) = (uint32(c.a), uint32(c.b));
        } else if (c.kind == CHANGE_PRICES) {
            (p.issuePrice, p.redemptionPrice) = (uint128(c.a), uint128(c.b));
        } else if (c.kind == CHANGE_DEBT_POLICY) {
            ghostDebtAllowed = c.a != 0;
        } else {
            (p.retiredKey, p.key, p.signer) = (p.key, c.a, vm.addr(c.a));
        }
    }

    // ================================================================ events

    /// @dev The logs recorded since the last call, after replaying their `Transfer` and `Expired`
    /// events into `eventBalance` and `expiredEventTotal` (each `Expired` must carry the receipt
    /// reference the docs give it).
    function _logs() internal returns (Vm.Log[] memory logs) {
        logs = vm.getRecordedLogs();
        for (uint256 i = 0; i < logs.length; ++i) {
            Vm.Log memory log = logs[i];
            if (log.emitter != address(ledger)) continue;
            if (log.topics[0] == TRANSFER_EVENT) {
                int256 value = int256(abi.decode(log.data, (uint256)));
                address from = address(uint160(uint256(log.topics[1])));
                address to = address(uint160(uint256(log.topics[2])));
                if (from != address(0)) eventBalance[from] -= value;
                if (to != address(0)) eventBalance[to] += value;
            } else if (log.topics[0] == EXPIRED_EVENT) {
                (uint256 points, uint32 month) = abi.decode(log.data, (uint256, uint32));
                address member = address(uint160(uint256(log.topics[1])));
                require(log.topics[2] == keccak256(abi.encode(member, uint24(month))), "Expired: receipt reference");
                require(month < ghostMonth, "Expired: a month not over");
                expiredEventTotal += points;
            }
        }
    }

    // ================================================================ signatures

    /// @dev An EIP-712 signature in EIP-2098 compact form (r, vs), as the ledger takes it.
    function _sign(uint256 key, bytes32 structHash) internal view returns (bytes32 r, bytes32 vs) {
        (uint8 v, bytes32 r_, bytes32 s) =
            vm.sign(key, keccak256(abi.encodePacked("\x19\x01", _domainSeparator, structHash)));
        (r, vs) = (r_, bytes32(uint256(s) | (uint256(v - 27) << 255)));
    }

    function _newKey(string memory what) internal returns (uint256) {
        return uint256(keccak256(abi.encode(what, ++_nonce))) % 2 ** 200 + 1;
    }

    // ================================================================ names, for failure messages

    function _errorName(bytes4 e) internal pure returns (string memory) {
        if (e == 0) return "accepted";
        if (e == ICoalitionPoints.InvalidSignature.selector) return "InvalidSignature";
        if (e == ICoalitionPoints.UnknownCampaign.selector) return "UnknownCampaign";
        if (e == ICoalitionPoints.InvalidCampaign.selector) return "InvalidCampaign";
        if (e == ICoalitionPoints.NonceAlreadyUsed.selector) return "NonceAlreadyUsed";
        if (e == ICoalitionPoints.SignatureExpired.selector) return "SignatureExpired";
        if (e == ICoalitionPoints.UnknownPartner.selector) return "UnknownPartner";
        if (e == ICoalitionPoints.PartnerSuspended.selector) return "PartnerSuspended";
        if (e == ICoalitionPoints.AllowanceExceeded.selector) return "AllowanceExceeded";
        if (e == ICoalitionPoints.InsufficientPoints.selector) return "InsufficientPoints";
        if (e == ICoalitionPoints.UnknownEarn.selector) return "UnknownEarn";
        if (e == ICoalitionPoints.ReversalExceedsEarn.selector) return "ReversalExceedsEarn";
        if (e == ICoalitionPoints.InvalidMember.selector) return "InvalidMember";
        if (e == ICoalitionPoints.AmountOutOfRange.selector) return "AmountOutOfRange";
        if (e == ICoalitionPoints.ZeroPoints.selector) return "ZeroPoints";
        if (e == ICoalitionPoints.TransfersDisabled.selector) return "TransfersDisabled";
        if (e == ICoalitionPoints.InvalidTierTable.selector) return "InvalidTierTable";
        if (e == ICoalitionPoints.InvalidExpiryMonths.selector) return "InvalidExpiryMonths";
        if (e == ICoalitionPoints.InvalidRate.selector) return "InvalidRate";
        if (e == ICoalitionPoints.InvalidSigner.selector) return "InvalidSigner";
        if (e == ICoalitionPoints.TooManyBuckets.selector) return "TooManyBuckets";
        if (e == ICoalitionPoints.MaxPointsExceeded.selector) return "MaxPointsExceeded";
        if (e == ICoalitionPoints.EarnExpired.selector) return "EarnExpired";
        if (e == ICoalitionPoints.PartnerNotYetActive.selector) return "PartnerNotYetActive";
        if (e == ICoalitionPoints.UnknownChange.selector) return "UnknownChange";
        if (e == ICoalitionPoints.ChangeNotDue.selector) return "ChangeNotDue";
        if (e == ICoalitionPoints.InvalidReason.selector) return "InvalidReason";
        if (e == ICoalitionPoints.AccountInUse.selector) return "AccountInUse";
        if (e == ICoalitionPoints.InvalidTier.selector) return "InvalidTier";
        if (e == ICoalitionPoints.UnknownRedemption.selector) return "UnknownRedemption";
        if (e == ICoalitionPoints.RefundExceedsRedemption.selector) return "RefundExceedsRedemption";
        if (e == ILedger.ERC20InsufficientBalance.selector) return "ERC20InsufficientBalance";
        if (e == ILedger.ERC20InsufficientAllowance.selector) return "ERC20InsufficientAllowance";
        if (e == ILedger.EnforcedPause.selector) return "EnforcedPause";
        if (e == ILedger.ExpectedPause.selector) return "ExpectedPause";
        if (e == ILedger.AccessControlUnauthorizedAccount.selector) return "AccessControlUnauthorizedAccount";
        if (e == ILedger.AccessControlInvalidDefaultAdmin.selector) return "AccessControlInvalidDefaultAdmin";
        if (e == ILedger.AccessControlEnforcedDefaultAdminDelay.selector) return "AccessControlEnforcedDefaultAdminDelay";
        if (e == ILedger.AccessControlEnforcedDefaultAdminRules.selector) return "AccessControlEnforcedDefaultAdminRules";
        if (e == ILedger.AccessControlBadConfirmation.selector) return "AccessControlBadConfirmation";
        return "(another error)";
    }

    function _batchName(uint8 kind) internal pure returns (string memory) {
        if (kind == 5) return "refundBatch";
        return kind == 1 ? "earnBatch" : (kind == 2 ? "redeemBatch" : (kind == 3 ? "reverseBatch" : "awardBatch"));
    }

    function _callName(bytes4 s) internal pure returns (string memory) {
        if (s == ILedger.rotateSigner.selector) return "rotateSigner";
        if (s == ILedger.migrate.selector) return "migrate";
        if (s == ILedger.applyChange.selector) return "applyChange";
        if (s == ILedger.cancelChange.selector) return "cancelChange";
        if (s == ILedger.cancelSignerChange.selector) return "cancelSignerChange";
        if (s == ILedger.requestSignerChange.selector) return "requestSignerChange";
        if (s == ILedger.transfer.selector) return "transfer";
        if (s == ILedger.transferFrom.selector) return "transferFrom";
        if (s == ILedger.assignTier.selector) return "assignTier";
        if (s == ILedger.addPartner.selector) return "addPartner";
        if (s == ILedger.setTiers.selector) return "setTiers";
        if (s == ILedger.setExpiryMonths.selector) return "setExpiryMonths";
        if (s == ILedger.setPartnerRate.selector) return "setPartnerRate";
        if (s == ILedger.pause.selector) return "pause";
        if (s == ILedger.earnBatch.selector) return "earnBatch";
        if (s == ILedger.redeemBatch.selector) return "redeemBatch";
        if (s == ILedger.reverseBatch.selector) return "reverseBatch";
        if (s == ILedger.awardBatch.selector) return "awardBatch";
        if (s == ILedger.refundBatch.selector) return "refundBatch";
        if (s == ILedger.expire.selector) return "expire";
        if (s == ILedger.setDebtPolicy.selector) return "setDebtPolicy";
        if (s == ILedger.createCampaign.selector) return "createCampaign";
        return "an operator call";
    }

    // ================================================================ ghost views

    function actorCount() external pure returns (uint256) {
        return ACTORS;
    }

    function ghostBalance(address member) public view returns (uint256 total) {
        uint24[] storage ms = _months[member];
        for (uint256 i = 0; i < ms.length; ++i) {
            if (ms[i] >= ghostMonth) total += ghostBucket[member][ms[i]];
        }
    }

    /// @notice The member's live buckets, earliest first, as `expiringOf` must list them, and
    /// how many buckets the ledger must hold for it (unswept expired ones included).
    function ghostSchedule(address member)
        public
        view
        returns (uint24[] memory months, uint256[] memory points, uint256 held)
    {
        uint24[] storage all = _months[member];
        held = all.length;
        months = new uint24[](held);
        points = new uint256[](held);
        uint256 n;
        for (uint256 i = 0; i < held; ++i) {
            if (all[i] >= ghostMonth) (months[n], points[n++]) = (all[i], ghostBucket[member][all[i]]);
        }
        assembly ("memory-safe") {
            mstore(months, n)
            mstore(points, n)
        }
    }

    /// @notice Points that expired (live at the end of their month), swept on-chain or not.
    function ghostExpired() public view returns (uint256 total) {
        total = _sweptTotal;
        for (uint256 a = 0; a < ACTORS; ++a) {
            uint24[] storage ms = _months[actors[a]];
            for (uint256 i = 0; i < ms.length && ms[i] < ghostMonth; ++i) {
                total += ghostBucket[actors[a]][ms[i]];
            }
        }
    }

    /// @notice Every past expiry month points were ever credited to, with what expired in it.
    function ghostBreakage() external view returns (uint24[] memory months, uint256[] memory points) {
        uint256 n = _monthsSeen.length;
        (months, points) = (new uint24[](n), new uint256[](n));
        uint256 k;
        for (uint256 i = 0; i < n; ++i) {
            uint24 m = _monthsSeen[i];
            if (m >= ghostMonth) continue;
            uint256 total = _sweptIn[m];
            for (uint256 a = 0; a < ACTORS; ++a) {
                total += ghostBucket[actors[a]][m];
            }
            (months[k], points[k++]) = (m, total);
        }
        assembly ("memory-safe") {
            mstore(months, k)
            mstore(points, k)
        }
    }

    function ghostQualifying(address member) public view returns (uint256 total) {
        for (uint256 m = ghostMonth - 11; m <= ghostMonth; ++m) {
            total += ghostEarned[member][m];
        }
    }

    /// @dev Everything the invariants compare for one member, in one call.
    struct MemberView {
        uint24[] months;
        uint256[] points;
        uint256 held;
        GhostMember member;
        uint256 qualifying;
        uint256 tier;
        uint256[ACTORS] approvals;
        uint256 unswept; // expired points the ledger has not swept yet (no event for them yet)
        int256 eventBalance;
        uint256 debt; // (r2)
    }

    /// @dev Everything the invariants compare for one partner, in one call.
    struct PartnerView {
        GhostPartner partner;
        uint256 allowedTotal;
        uint256 signedIssued;
        uint256 forgedIssued;
    }

    function ghostMemberView(address member) external view returns (MemberView memory v) {
        (v.months, v.points, v.held) = ghostSchedule(member);
        (v.member, v.qualifying, v.tier) = (_members[member], ghostQualifying(member), _tierIndex(member));
        for (uint256 j = 0; j < ACTORS; ++j) {
            v.approvals[j] = ghostApproval[member][actors[j]];
        }
        uint24[] storage ms = _months[member];
        for (uint256 i = 0; i < ms.length && ms[i] < ghostMonth; ++i) {
            v.unswept += ghostBucket[member][ms[i]];
        }
        v.eventBalance = eventBalance[member];
        v.debt = ghostDebt[member];
    }

    /// @notice Points swept per the ghost, and per the ledger's `Expired` events.
    function ghostSwept() external view returns (uint256 swept, uint256 expiredEvents) {
        return (_sweptTotal, expiredEventTotal);
    }

    function ghostPartnerView(uint32 pid) external view returns (PartnerView memory) {
        return PartnerView(_partners[pid], ghostAllowedTotal[pid], ghostSignedIssued[pid], ghostForgedIssued[pid]);
    }

    function allActors() external view returns (address[ACTORS] memory) {
        return actors;
    }

    function ghostChange(uint256 id) external view returns (GhostChange memory) {
        return _changes[id];
    }

    function ghostTiers() external view returns (ICoalitionPoints.Tier[] memory) {
        return _ghostTiers;
    }

    function ghostRedemptionCount() external view returns (uint256) {
        return _redemptions.length;
    }

    /// @notice Redemption `i`'s leaf and points.
    function ghostRedemption(uint256 i) external view returns (bytes32 leaf, uint256 points) {
        GhostRedemption memory g = _redemptions[i];
        return (_redemptionLeaf(g), g.points);
    }

    function ghostCampaignCount() external view returns (uint256) {
        return _ghostCampaigns.length;
    }

    /// @notice Campaign `id` (from 1): its budget and what it spent.
    function ghostCampaign(uint64 id) external view returns (uint256 budget, uint256 spent) {
        GhostCampaign storage c = _ghostCampaigns[id - 1];
        return (c.terms.budget, c.spent);
    }

    function admin() external view returns (address) {
        return operators[adminIndex];
    }
}
