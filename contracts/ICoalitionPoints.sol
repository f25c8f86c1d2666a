// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title ICoalitionPoints
/// @notice Public surface of the coalition points ledger: signed operations, events and errors.
/// @dev Months are indexed as `year * 12 + (month - 1)` in UTC (see `CalendarMonths`).
interface ICoalitionPoints {
    // ---------------------------------------------------------------- operations

    /// @notice An earn: the partner reports a purchase; the contract computes the points.
    /// @dev Signed by the partner's signer over the EIP-712 type `Earn`. `(r, vs)` is an
    /// EIP-2098 compact signature (cheaper calldata than 65 bytes). `maxPoints` is the most
    /// the partner accepts to issue for this earn (bonus included); an earn that would issue
    /// more is rejected. (r2) `campaignId` names one of the partner's campaigns (0: none); the
    /// partner then signs the EIP-712 type `CampaignEarn`, which binds it.
    struct EarnOp {
        uint32 partnerId;
        address member;
        uint256 spend;
        uint256 maxPoints;
        uint64 campaignId;
        bytes32 receiptRef;
        uint256 nonce;
        uint256 deadline;
        bytes32 r;
        bytes32 vs;
    }

    /// @notice A redemption: the member pays with points at a partner.
    /// @dev Signed by the member over the EIP-712 type `Redeem`.
    struct RedeemOp {
        address member;
        uint32 partnerId;
        uint256 points;
        bytes32 receiptRef;
        uint256 nonce;
        uint256 deadline;
        bytes32 r;
        bytes32 vs;
    }

    /// @notice The original earn a reversal refers to, with its inclusion proof.
    /// @dev The leaf is `keccak256(abi.encode(partnerId, member, receiptRef, spend, points, earnMonth))`,
    /// or (r2) for an earn with a campaign bonus `keccak256(abi.encode(partnerId, member,
    /// receiptRef, spend, points, earnMonth, bonus))` (`points` includes the bonus), and `proof`
    /// proves it against the root committed for `batchId` (OpenZeppelin `MerkleProof`,
    /// sorted-pair hashing).
    struct EarnRecord {
        uint64 batchId;
        address member;
        bytes32 receiptRef;
        uint256 spend;
        uint256 points;
        uint32 earnMonth;
        bytes32[] proof;
        uint256 bonus;
    }

    /// @notice A partner's campaign (r2): from `start` (inclusive) to `end` (exclusive), block
    /// time, each earn naming it by a member whose tier index `i` has bit `1 << i` in
    /// `tierMask` and whose spend is at least `minSpend` gets a bonus of base points x
    /// `bonusBps` / 10,000 + `fixedBonus`, never beyond `budget` minus what was spent. Signed
    /// by the partner over the EIP-712 type `Campaign` (with a partner nonce and a deadline).
    struct CampaignTerms {
        uint32 partnerId;
        uint40 start;
        uint40 end;
        uint24 bonusBps;
        uint48 fixedBonus;
        uint64 minSpend;
        uint8 tierMask;
        uint128 budget;
    }

    /// @notice A reversal (refund): the issuing partner takes back points of one of its earns.
    /// @dev Signed by the partner's signer over the EIP-712 type `Reverse`, which binds the
    /// earn's leaf hash; `receiptRef` is the hash of the refund's own receipt document.
    struct ReverseOp {
        uint32 partnerId;
        uint256 points;
        bytes32 receiptRef;
        uint256 nonce;
        uint256 deadline;
        bytes32 r;
        bytes32 vs;
        EarnRecord earn;
    }

    /// @notice An award (r2): points issued without a purchase, for a reason from a fixed list
    /// (1 bonus, 2 goodwill, 3 referral, 4 signup, 5 employee, 6 correction, 7 retro_claim).
    /// @dev Signed by the partner's signer over the EIP-712 type `Award`. Awards are drawn
    /// from the partner's allowance and do not count as qualifying points. Each award batch
    /// commits a Merkle root like an earn batch (leaf with spend 0), so a reversal can take an
    /// award back.
    struct AwardOp {
        uint32 partnerId;
        address member;
        uint256 points;
        uint8 reason;
        bytes32 receiptRef;
        uint256 nonce;
        uint256 deadline;
        bytes32 r;
        bytes32 vs;
    }

    /// @notice A redemption as committed on-chain, what a refund proves against its batch root
    /// (r2).
    /// @dev The leaf is `keccak256(abi.encode(partnerId, member, receiptRef, points,
    /// expiryMonth, batchId, index))`: `index` is the redemption's place among the batch's
    /// accepted redemptions (so two alike redemptions have two leaves) and `expiryMonth` the
    /// latest expiry month among the buckets it burnt. `proof` proves the leaf against the root
    /// committed for `batchId` (OpenZeppelin `MerkleProof`, sorted-pair hashing).
    struct RedemptionRecord {
        uint64 batchId;
        uint32 index;
        address member;
        bytes32 receiptRef;
        uint256 points;
        uint32 expiryMonth;
        bytes32[] proof;
    }

    /// @notice A refund of a redemption (r2): the partner at which points were redeemed gives
    /// points back when the goods are returned.
    /// @dev Signed by the partner's signer over the EIP-712 type `Refund`, which binds the
    /// redemption's leaf hash; `receiptRef` is the hash of the return's own receipt document.
    struct RefundOp {
        uint32 partnerId;
        uint256 points;
        bytes32 receiptRef;
        uint256 nonce;
        uint256 deadline;
        bytes32 r;
        bytes32 vs;
        RedemptionRecord redemption;
    }

    /// @notice A partner as the operator registered it, with its running totals.
    struct PartnerInfo {
        address signer;
        bool active;
        uint32 ratePoints;
        uint32 ratePerMinorUnits;
        bytes3 currency;
        uint128 allowance;
        uint128 issued;
        uint128 reversed;
        uint128 redeemed;
        uint40 activeFrom;
        uint256 awarded;
    }

    /// @notice One row of the tier table: members whose qualifying points reach `threshold`
    /// earn at `multiplierBps` / 10000 of the base rate.
    struct Tier {
        uint64 threshold;
        uint32 multiplierBps;
    }

    // ---------------------------------------------------------------- domain events

    /// @notice Points issued by `partnerId` to `member` for a purchase of `spend` minor units.
    /// (r2) `points` includes `bonus`, the bonus of campaign `campaignId` (0: none named);
    /// an earn that named a campaign it did not qualify for has bonus 0.
    event Earned(
        uint32 indexed partnerId,
        address indexed member,
        bytes32 indexed receiptRef,
        uint256 spend,
        uint256 points,
        uint32 expiryMonth,
        uint64 campaignId,
        uint256 bonus
    );

    /// @notice A partner registered a campaign with its signature (r2).
    event CampaignCreated(
        uint64 indexed campaignId,
        uint32 indexed partnerId,
        uint40 start,
        uint40 end,
        uint24 bonusBps,
        uint48 fixedBonus,
        uint64 minSpend,
        uint8 tierMask,
        uint128 budget
    );

    /// @notice Points issued by `partnerId` to `member` without a purchase (r2), for `reason`.
    event Awarded(
        uint32 indexed partnerId,
        address indexed member,
        bytes32 indexed receiptRef,
        uint256 points,
        uint8 reason,
        uint32 expiryMonth
    );

    /// @notice The operator gave `member` at least tier `tier` until `until` (r2); the member's
    /// tier is the higher of this and the one its qualifying points give.
    event TierAssigned(address indexed member, uint8 tier, uint64 until);

    /// @notice `from` moved all its points, expiry months, tier history and assigned tier to
    /// `to`, a new address of its own, with its signature (r2).
    event Migrated(address indexed from, address indexed to, uint256 points);

    /// @notice Points of `member` burnt as payment at `partnerId`.
    event Redeemed(uint32 indexed partnerId, address indexed member, bytes32 indexed receiptRef, uint256 points);

    /// @notice Points given back to `member` by `partnerId`, at which they were redeemed, for
    /// returned goods (r2). They expire at the end of `expiryMonth`: the latest month of the
    /// points the redemption burnt, or, when that month is over, the month a fresh earn gets.
    /// @param receiptRef hash of the return's receipt; `redemptionReceiptRef` the redemption's.
    event Refunded(
        uint32 indexed partnerId,
        address indexed member,
        bytes32 indexed receiptRef,
        uint256 points,
        bytes32 redemptionReceiptRef,
        uint32 expiryMonth
    );

    /// @notice The accepted redemptions of one batch, committed as a Merkle root for later
    /// refunds (r2); `expiryMonths[i]` is the leaf field of the i-th accepted redemption.
    event RedeemBatchCommitted(uint64 indexed batchId, bytes32 root, uint32[] expiryMonths);

    /// @notice Points of an earn taken back by the issuing partner (refund).
    /// @param receiptRef hash of the refund receipt; `earnReceiptRef` the original purchase's.
    event Reversed(
        uint32 indexed partnerId,
        address indexed member,
        bytes32 indexed receiptRef,
        uint256 points,
        bytes32 earnReceiptRef
    );

    /// @notice (r2) Of the reversal with receipt `receiptRef`, `points` that `member` (the holder)
    /// no longer held became its debt, under the operator's debt policy. Emitted before that
    /// reversal's `Reversed`, whose points include these: the balance fell by the difference.
    event DebtRecorded(uint32 indexed partnerId, address indexed member, bytes32 indexed receiptRef, uint256 points);

    /// @notice (r2) `points` issued or refunded to `member` by the operation with receipt
    /// `receiptRef` at `partnerId` paid its debt instead of its balance. Emitted before that
    /// operation's `Earned`, `Awarded` or `Refunded`, whose points include these.
    event DebtRepaid(uint32 indexed partnerId, address indexed member, bytes32 indexed receiptRef, uint256 points);

    /// @notice Points of `member` that reached the end of `expiryMonth`, swept from its balance.
    /// @dev `receiptRef` is `keccak256(abi.encode(member, expiryMonth))`: expiry has no receipt.
    event Expired(address indexed member, bytes32 indexed receiptRef, uint256 points, uint32 expiryMonth);

    /// @notice The accepted earns of one batch, committed as a Merkle root for later reversals.
    event EarnBatchCommitted(uint64 indexed batchId, bytes32 root, uint256 count);

    /// @notice An operation of a batch was skipped; `reason` is an ABI-encoded custom error.
    event OperationRejected(uint8 indexed kind, uint256 index, bytes32 indexed receiptRef, bytes reason);

    // ---------------------------------------------------------------- operator events

    event PartnerAdded(uint32 indexed partnerId, address signer, bytes3 currency);
    event PartnerUpdated(uint32 indexed partnerId, address signer, uint32 ratePoints, uint32 ratePerMinorUnits);
    event PartnerStatusChanged(uint32 indexed partnerId, bool active);
    event AllowanceSet(uint32 indexed partnerId, uint128 allowance);
    event TiersSet(Tier[] tiers);
    event ExpiryPolicySet(uint16 months);
    event TransfersSwitched(bool enabled);
    event PointValueSet(uint256 minorUnitsPerPoint, bytes3 currency);

    /// @notice A programme change announced now, effective from `effectiveAt` (the notice
    /// period later) once someone calls `applyChange`. `data` is the ABI-encoded argument list
    /// of the change (kind 1 expiry `(uint16)`, 2 tiers `(Tier[])`, 3 point value
    /// `(uint256,bytes3)`, 4 earn rate `(uint32,uint32)`, 5 signer `(address)`, 6 partner
    /// prices `(uint128,uint128)`, 7 debt policy `(bool)`).
    event ChangeScheduled(
        uint256 indexed changeId, uint8 indexed kind, uint32 indexed partnerId, uint64 effectiveAt, bytes data
    );
    /// @notice A scheduled change took effect.
    event ChangeApplied(uint256 indexed changeId, uint8 indexed kind, uint32 indexed partnerId);
    /// @notice A scheduled change was withdrawn (by the operator, or by the partner's current
    /// key for a signer change).
    event ChangeCancelled(uint256 indexed changeId, uint8 indexed kind, uint32 indexed partnerId);
    /// @notice A partner's own settlement prices took effect (r2): what it pays per point it
    /// issues and is paid per point redeemed at it (0: the coalition's point value).
    event PartnerPricesSet(uint32 indexed partnerId, uint128 issuePrice, uint128 redemptionPrice);
    /// @notice (r2) The debt policy took effect: `allowed` true, a reversal beyond the holder's
    /// points records the shortfall as its debt; false, such a reversal is rejected.
    event DebtPolicySet(bool allowed);
    /// @notice A partner's signer changed with its previous key's signature.
    event SignerRotated(uint32 indexed partnerId, address previousSigner, address newSigner);

    // ---------------------------------------------------------------- errors

    error InvalidSignature(address expected, address recovered);
    error NonceAlreadyUsed(address signer, uint256 nonce);
    error SignatureExpired(uint256 deadline, uint256 timestamp);
    error UnknownPartner(uint32 partnerId);
    error PartnerSuspended(uint32 partnerId);
    error AllowanceExceeded(uint32 partnerId, uint256 allowance, uint256 needed);
    error InsufficientPoints(address member, uint256 balance, uint256 needed);
    error UnknownEarn(bytes32 earnLeaf);
    error ReversalExceedsEarn(bytes32 earnLeaf, uint256 remaining, uint256 requested);
    error InvalidMember(address member);
    error AmountOutOfRange(uint256 amount, uint256 max);
    error ZeroPoints();
    error TransfersDisabled();
    error InvalidTierTable();
    error InvalidExpiryMonths(uint256 months);
    error InvalidRate(uint256 ratePoints, uint256 ratePerMinorUnits);
    error InvalidSigner(address signer);
    error TooManyBuckets(address member);
    error MaxPointsExceeded(uint256 maxPoints, uint256 points);
    error EarnExpired(bytes32 earnLeaf, uint256 expiryMonth);
    error PartnerNotYetActive(uint32 partnerId, uint256 activeFrom);
    error NoticePeriodTooShort(uint256 noticePeriod);
    error InvalidModule(address module);
    error UnknownChange(uint256 changeId);
    error ChangeNotDue(uint256 changeId, uint256 effectiveAt);
    error InvalidReason(uint8 reason);
    error AccountInUse(address account);
    error InvalidTier(uint256 tier);
    error UnknownRedemption(bytes32 redemptionLeaf);
    error RefundExceedsRedemption(bytes32 redemptionLeaf, uint256 remaining, uint256 requested);
    error UnknownCampaign(uint64 campaignId);
    error InvalidCampaign();
}
