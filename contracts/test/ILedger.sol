// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ICoalitionPoints} from "../ICoalitionPoints.sol";

/// @notice Everything the handler calls on the deployed ledger: its own surface plus the
/// ERC-20, Pausable and AccessControlDefaultAdminRules functions it inherits.
interface ILedger is ICoalitionPoints {
    // ERC-20
    function totalSupply() external view returns (uint256);
    function balanceOf(address account) external view returns (uint256);
    function allowance(address owner, address spender) external view returns (uint256);
    function transfer(address to, uint256 value) external returns (bool);
    function transferFrom(address from, address to, uint256 value) external returns (bool);
    function approve(address spender, uint256 value) external returns (bool);

    // signed batches and the sweep
    function earnBatch(EarnOp[] calldata ops) external returns (uint256 accepted);
    function redeemBatch(RedeemOp[] calldata ops) external returns (uint256 accepted);
    function reverseBatch(ReverseOp[] calldata ops) external returns (uint256 accepted);
    function expire(address[] calldata members) external;

    // operator
    function addPartner(address signer, uint32 ratePoints, uint32 ratePerMinorUnits, bytes3 currency, uint128 allowance)
        external
        returns (uint32);
    function updatePartner(uint32 partnerId, address signer, uint32 ratePoints, uint32 ratePerMinorUnits) external;
    function setPartnerActive(uint32 partnerId, bool active) external;
    function setAllowance(uint32 partnerId, uint128 allowance) external;
    function setTiers(Tier[] calldata table) external;
    function setExpiryMonths(uint16 months) external;
    function setTransfersEnabled(bool enabled) external;
    function setPointValue(uint256 minorUnitsPerPoint, bytes3 currency) external;
    function pause() external;
    function unpause() external;
    function beginDefaultAdminTransfer(address newAdmin) external;
    function cancelDefaultAdminTransfer() external;
    function acceptDefaultAdminTransfer() external;

    // views
    function paused() external view returns (bool);
    function defaultAdmin() external view returns (address);
    function pendingDefaultAdmin() external view returns (address newAdmin, uint48 schedule);
    function currentMonth() external view returns (uint24);
    function partnerCount() external view returns (uint32);
    function partner(uint32 partnerId) external view returns (PartnerInfo memory);
    function tiers() external view returns (Tier[] memory);
    function expiryMonths() external view returns (uint16);
    function transfersEnabled() external view returns (bool);
    function pointValue() external view returns (uint256, bytes3);
    function qualifyingPoints(address member) external view returns (uint256);
    function tierOf(address member) external view returns (uint256);
    function expiringOf(address member) external view returns (uint24[] memory months, uint256[] memory points);
    function earnBatchCount() external view returns (uint64);
    function reversedOf(bytes32 earnLeaf) external view returns (uint256);

    // inherited errors the handler expects by selector
    error ERC20InsufficientBalance(address sender, uint256 balance, uint256 needed);
    error ERC20InsufficientAllowance(address spender, uint256 allowance, uint256 needed);
    error EnforcedPause();
    error ExpectedPause();
    error AccessControlUnauthorizedAccount(address account, bytes32 neededRole);
    error AccessControlInvalidDefaultAdmin(address defaultAdmin);
    error AccessControlEnforcedDefaultAdminDelay(uint48 schedule);
}
