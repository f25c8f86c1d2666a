// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ICoalitionPoints} from "../ICoalitionPoints.sol";

/// @notice Everything the handler calls at the ledger's address (revision 2: the ledger, and
/// through its fallback the admin module and the programme module), plus the ERC-20,
/// Pausable and AccessControlDefaultAdminRules functions they inherit.
interface ILedger is ICoalitionPoints {
    /// @dev `changeOf`'s record (LedgerBase.Change).
    struct Change {
        uint8 kind;
        uint8 state;
        uint32 partnerId;
        uint64 effectiveAt;
        bytes data;
    }

    // ERC-20
    function totalSupply() external view returns (uint256);
    function balanceOf(address account) external view returns (uint256);
    function allowance(address owner, address spender) external view returns (uint256);
    function transfer(address to, uint256 value) external returns (bool);
    function transferFrom(address from, address to, uint256 value) external returns (bool);
    function approve(address spender, uint256 value) external returns (bool);

    // signed batches and the sweep (ledger; reverseBatch in the admin module, awardBatch in
    // the programme module)
    function earnBatch(EarnOp[] calldata ops) external returns (uint256 accepted);
    function redeemBatch(RedeemOp[] calldata ops) external returns (uint256 accepted);
    function reverseBatch(ReverseOp[] calldata ops) external returns (uint256 accepted);
    function awardBatch(AwardOp[] calldata ops) external returns (uint256 accepted);
    function refundBatch(RefundOp[] calldata ops) external returns (uint256 accepted);
    function expire(address[] calldata members) external;

    // signed single calls
    function rotateSigner(uint32 partnerId, address newSigner, uint256 nonce, uint256 deadline, bytes32 r, bytes32 vs)
        external;
    function cancelSignerChange(uint256 changeId, bytes32 r, bytes32 vs) external;
    function migrate(address from, address to, uint256 nonce, uint256 deadline, bytes32 r, bytes32 vs) external;
    function applyChange(uint256 changeId) external;
    function createCampaign(CampaignTerms calldata terms, uint256 nonce, uint256 deadline, bytes32 r, bytes32 vs)
        external
        returns (uint64 campaignId);

    // operator (admin module)
    function addPartner(address signer, uint32 ratePoints, uint32 ratePerMinorUnits, bytes3 currency, uint128 allowance)
        external
        returns (uint32);
    function setPartnerActive(uint32 partnerId, bool active) external;
    function setAllowance(uint32 partnerId, uint128 allowance) external;
    function setTiers(Tier[] calldata table) external returns (uint256 changeId);
    function setExpiryMonths(uint16 months) external returns (uint256 changeId);
    function setPointValue(uint256 minorUnitsPerPoint, bytes3 currency) external returns (uint256 changeId);
    function setPartnerRate(uint32 partnerId, uint32 ratePoints, uint32 ratePerMinorUnits)
        external
        returns (uint256 changeId);
    function setPartnerPrices(uint32 partnerId, uint128 issuePrice, uint128 redemptionPrice)
        external
        returns (uint256 changeId);
    function requestSignerChange(uint32 partnerId, address signer) external returns (uint256 changeId);
    function cancelChange(uint256 changeId) external;
    function setTransfersEnabled(bool enabled) external;
    function pause() external;
    function unpause() external;
    function beginDefaultAdminTransfer(address newAdmin) external;
    function cancelDefaultAdminTransfer() external;
    function acceptDefaultAdminTransfer() external;
    function changeDefaultAdminDelay(uint48 newDelay) external;
    function rollbackDefaultAdminDelay() external;
    function grantRole(bytes32 role, address account) external;
    function revokeRole(bytes32 role, address account) external;
    function renounceRole(bytes32 role, address account) external;
    function hasRole(bytes32 role, address account) external view returns (bool);
    function defaultAdminDelay() external view returns (uint48);

    // operator (programme module)
    function assignTier(address member, uint8 tier, uint64 until) external;
    function setDebtPolicy(bool allowed) external returns (uint256 changeId);

    // views
    function paused() external view returns (bool);
    function defaultAdmin() external view returns (address);
    function pendingDefaultAdmin() external view returns (address newAdmin, uint48 schedule);
    function currentMonth() external view returns (uint24);
    function partnerCount() external view returns (uint32);
    function partner(uint32 partnerId) external view returns (PartnerInfo memory);
    function partnerPrices(uint32 partnerId) external view returns (uint128 issuePrice, uint128 redemptionPrice);
    function tiers() external view returns (Tier[] memory);
    function expiryMonths() external view returns (uint16);
    function transfersEnabled() external view returns (bool);
    function pointValue() external view returns (uint256, bytes3);
    function qualifyingPoints(address member) external view returns (uint256);
    function tierOf(address member) external view returns (uint256);
    function assignedTier(address member) external view returns (uint8 tier, uint64 until);
    function expiringOf(address member) external view returns (uint24[] memory months, uint256[] memory points);
    function expiredIn(uint24 month) external view returns (uint256);
    function earnBatchCount() external view returns (uint64);
    function reversedOf(bytes32 earnLeaf) external view returns (uint256);
    function refundedOf(bytes32 redemptionLeaf) external view returns (uint256);
    function refunded(uint32 partnerId) external view returns (uint256);
    function redeemRoot(uint64 batchId) external view returns (bytes32);
    function redeemBatchCount() external view returns (uint64);
    function partnerNonceUsed(uint32 partnerId, uint256 nonce) external view returns (bool);
    function memberNonceUsed(address member, uint256 nonce) external view returns (bool);
    function noticePeriod() external view returns (uint64);
    function changeCount() external view returns (uint256);
    function changeOf(uint256 changeId) external view returns (Change memory);
    function module() external view returns (address);
    function debtOf(address member) external view returns (uint256);
    function totalDebt() external view returns (uint256);
    function debtAllowed() external view returns (bool);
    function campaign(uint64 campaignId) external view returns (CampaignTerms memory terms, uint256 spent);
    function campaignCount() external view returns (uint64);

    // inherited errors the handler expects by selector
    error ERC20InsufficientBalance(address sender, uint256 balance, uint256 needed);
    error ERC20InsufficientAllowance(address spender, uint256 allowance, uint256 needed);
    error EnforcedPause();
    error ExpectedPause();
    error AccessControlUnauthorizedAccount(address account, bytes32 neededRole);
    error AccessControlInvalidDefaultAdmin(address defaultAdmin);
    error AccessControlEnforcedDefaultAdminDelay(uint48 schedule);
    error AccessControlEnforcedDefaultAdminRules();
    error AccessControlBadConfirmation();
}
