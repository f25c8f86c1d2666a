// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title ICoalitionPoints
/// @notice Public surface of the coalition points ledger: signed operations, events and errors.
/// @dev Months are indexed as `year * 12 + (month - 1)` in UTC (see `CalendarMonths`).
interface ICoalitionPoints {
    // ---------------------------------------------------------------- operations

    /// @notice An earn: the partner reports a purchase; the contract computes the points.
    /// @dev Signed by the partner's signer over the EIP-712 type `Earn`. `(r, vs)` is an
    /// EIP-2098 compact signature (cheaper calldata than 65 bytes).
    struct EarnOp {
        uint32 partnerId;
        address member;
        uint256 spend;
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
    /// @dev The leaf is `keccak256(abi.encode(partnerId, member, receiptRef, spend, points, earnMonth))`
    /// and `proof` proves it against the root committed for `batchId` (OpenZeppelin
    /// `MerkleProof`, sorted-pair hashing).
    struct EarnRecord {
        uint64 batchId;
        address member;
        bytes32 receiptRef;
        uint256 spend;
        uint256 points;
        uint32 earnMonth;
        bytes32[] proof;
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
    }

    /// @notice One row of the tier table: members whose qualifying points reach `threshold`
    /// earn at `multiplierBps` / 10000 of the base rate.
    struct Tier {
        uint64 threshold;
        uint32 multiplierBps;
    }

    // ---------------------------------------------------------------- domain events

    /// @notice Points issued by `partnerId` to `member` for a purchase of `spend` minor units.
    event Earned(
        uint32 indexed partnerId,
        address indexed member,
        bytes32 indexed receiptRef,
        uint256 spend,
        uint256 points,
        uint32 expiryMonth
    );

    /// @notice Points of `member` burnt as payment at `partnerId`.
    event Redeemed(uint32 indexed partnerId, address indexed member, bytes32 indexed receiptRef, uint256 points);

    /// @notice Points of an earn taken back by the issuing partner (refund).
    /// @param receiptRef hash of the refund receipt; `earnReceiptRef` the original purchase's.
    event Reversed(
        uint32 indexed partnerId,
        address indexed member,
        bytes32 indexed receiptRef,
        uint256 points,
        bytes32 earnReceiptRef
    );

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
}
