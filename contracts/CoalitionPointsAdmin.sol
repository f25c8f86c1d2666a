// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {LedgerBase} from "./LedgerBase.sol";

/// @title CoalitionPointsAdmin
/// @notice The ledger's operator module: partner onboarding, allowances, scheduled programme
/// changes under the notice period, signer rotation. (r2: reversals moved to the programme
/// module, to make room; they gained debt.) Deployed once and run by
/// `CoalitionPoints` through `delegatecall` on the ledger's own storage; its own storage is
/// never used, so calling it directly changes nothing of the ledger.
contract CoalitionPointsAdmin is LedgerBase {
    address private immutable _PROGRAMS;
    bytes32 private constant _CAMPAIGN_TYPEHASH = keccak256(
        "Campaign(uint32 partnerId,uint40 start,uint40 end,uint24 bonusBps,uint48 fixedBonus,uint64 minSpend,uint8 tierMask,uint128 budget,uint256 nonce,uint256 deadline)"
    );

    /// @param programs the deployed `CoalitionPointsPrograms`, which runs what this module
    /// does not define (awards, assigned tiers, migration), still on the ledger's storage.
    constructor(address programs) LedgerBase("", "", msg.sender, 0) {
        if (programs.code.length == 0) revert InvalidModule(programs);
        _PROGRAMS = programs;
    }

    /// @notice Runs every function neither the ledger nor this module defines in the
    /// programme module (a delegatecall from a delegatecall: still the ledger's storage).
    fallback() external {
        address programs = _PROGRAMS;
        assembly ("memory-safe") {
            calldatacopy(0, 0, calldatasize())
            let ok := delegatecall(gas(), programs, 0, calldatasize(), 0, 0)
            returndatacopy(0, 0, returndatasize())
            if iszero(ok) { revert(0, returndatasize()) }
            return(0, returndatasize())
        }
    }

    // ================================================================ operator

    /// @notice Registers a partner, active, with its signer, earn rate and allowance. It
    /// issues its first point only after the notice period, so everyone sees a new issuer
    /// first (`PartnerInfo.activeFrom`).
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
        _issueTotals[partnerId] = IssueTotals(allowance, 0, uint40(block.timestamp + _noticePeriod));
        emit PartnerAdded(partnerId, signer, currency);
        emit PartnerUpdated(partnerId, signer, ratePoints, ratePerMinorUnits);
        emit AllowanceSet(partnerId, allowance);
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

    /// @notice Schedules a new tier table: first threshold 0, thresholds strictly ascending,
    /// multipliers from 1 to 1,000,000 basis points. Takes effect after the notice period.
    /// @return changeId the scheduled change.
    function setTiers(Tier[] calldata table) external onlyRole(DEFAULT_ADMIN_ROLE) returns (uint256 changeId) {
        if (table.length == 0 || table.length > MAX_TIERS || table[0].threshold != 0) revert InvalidTierTable();
        for (uint256 i = 0; i < table.length; ++i) {
            Tier calldata t = table[i];
            if (t.multiplierBps == 0 || t.multiplierBps > 100 * _BPS) revert InvalidTierTable();
            if (i != 0 && t.threshold <= table[i - 1].threshold) revert InvalidTierTable();
        }
        return _schedule(CHANGE_TIERS, 0, abi.encode(table));
    }

    /// @notice Schedules the expiry policy for points earned once it applies (0 = never
    /// expire). Takes effect after the notice period.
    /// @return changeId the scheduled change.
    function setExpiryMonths(uint16 months) external onlyRole(DEFAULT_ADMIN_ROLE) returns (uint256 changeId) {
        if (months > MAX_EXPIRY_MONTHS) revert InvalidExpiryMonths(months);
        return _schedule(CHANGE_EXPIRY, 0, abi.encode(months));
    }

    /// @notice Schedules the debt policy (r2): `true`, a reversal beyond the points its holder
    /// still has takes what there is and records the rest as the holder's debt; `false` (the
    /// default), such a reversal is rejected. Takes effect after the notice period.
    /// @return changeId the scheduled change.
    function setDebtPolicy(bool allowed) external onlyRole(DEFAULT_ADMIN_ROLE) returns (uint256 changeId) {
        return _schedule(_CHANGE_DEBT_POLICY, 0, abi.encode(allowed));
    }

    /// @notice Switches member-to-member transfers on or off.
    function setTransfersEnabled(bool enabled) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _transfersEnabled = enabled;
        emit TransfersSwitched(enabled);
    }

    /// @notice Schedules the settlement value of a point. Takes effect after the notice period.
    /// @return changeId the scheduled change.
    function setPointValue(uint256 minorUnitsPerPoint, bytes3 currency)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
        returns (uint256 changeId)
    {
        return _schedule(CHANGE_POINT_VALUE, 0, abi.encode(minorUnitsPerPoint, currency));
    }

    /// @notice Schedules a partner's earn rate (points per minor units). Takes effect after
    /// the notice period.
    /// @return changeId the scheduled change.
    function setPartnerRate(uint32 partnerId, uint32 ratePoints, uint32 ratePerMinorUnits)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
        returns (uint256 changeId)
    {
        _checkPartnerSettings(_knownPartner(partnerId).signer, ratePoints, ratePerMinorUnits);
        return _schedule(CHANGE_RATE, partnerId, abi.encode(ratePoints, ratePerMinorUnits));
    }

    /// @notice Schedules a partner's own settlement prices: what it pays per point it issues
    /// and is paid per point redeemed at it (0: the coalition's point value). Takes effect
    /// after the notice period.
    /// @return changeId the scheduled change.
    function setPartnerPrices(uint32 partnerId, uint128 issuePrice, uint128 redemptionPrice)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
        returns (uint256 changeId)
    {
        _knownPartner(partnerId);
        return _schedule(CHANGE_PRICES, partnerId, abi.encode(issuePrice, redemptionPrice));
    }

    /// @notice A partner's settlement prices in force (0: the coalition's point value).
    function partnerPrices(uint32 partnerId) external view returns (uint128 issuePrice, uint128 redemptionPrice) {
        PartnerPrices memory p = _prices[partnerId];
        return (p.issue, p.redemption);
    }

    /// @notice Schedules a new signer for a partner whose key is lost. Takes effect after the
    /// notice period; until then the partner's current key can cancel it
    /// (`cancelSignerChange`), as can the operator.
    /// @return changeId the scheduled change.
    function requestSignerChange(uint32 partnerId, address signer)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
        returns (uint256 changeId)
    {
        _knownPartner(partnerId);
        if (signer == address(0)) revert InvalidSigner(signer);
        return _schedule(CHANGE_SIGNER, partnerId, abi.encode(signer));
    }

    /// @notice Replaces a partner's signer at once, authorized by the current signer's
    /// EIP-712 signature over `RotateSigner(partnerId, newSigner, nonce, deadline)`. Anyone
    /// may submit it; the nonce comes from the partner's operation nonces.
    function rotateSigner(
        uint32 partnerId,
        address newSigner,
        uint256 nonce,
        uint256 deadline,
        bytes32 r,
        bytes32 vs
    ) external {
        PartnerCore storage p = _knownPartner(partnerId);
        if (newSigner == address(0)) revert InvalidSigner(newSigner);
        address previous = p.signer;
        mapping(uint256 => uint256) storage nonces = _partnerNonces[partnerId];
        _revertIf(_checkFresh(nonces, previous, nonce, deadline));
        bytes32 structHash = keccak256(abi.encode(ROTATE_SIGNER_TYPEHASH, partnerId, newSigner, nonce, deadline));
        _revertIf(_checkSigner(structHash, r, vs, previous));
        _spendNonce(nonces, nonce);
        p.signer = newSigner;
        emit SignerRotated(partnerId, previous, newSigner);
        emit PartnerUpdated(partnerId, newSigner, p.ratePoints, p.ratePerMinorUnits);
    }

    /// @notice Registers a partner's campaign (r2), authorized by the partner's signer over
    /// `Campaign(partnerId, start, end, bonusBps, fixedBonus, minSpend, tierMask, budget,
    /// nonce, deadline)` (a partner nonce); anyone submits it. Refused (`InvalidCampaign`) with
    /// an empty window, no tier, no budget, no bonus, or a multiplier above 100x. Creating one
    /// issues nothing: its bonus comes with earns that name it, from the partner's allowance.
    /// @return campaignId the new campaign's id (from 1).
    function createCampaign(CampaignTerms calldata t, uint256 nonce, uint256 deadline, bytes32 r, bytes32 vs)
        external
        returns (uint64 campaignId)
    {
        PartnerCore memory p = _partners[t.partnerId];
        _revertIf(_checkPartner(p, t.partnerId));
        if (
            t.start >= t.end || t.tierMask == 0 || t.budget == 0 || t.bonusBps > _MAX_BONUS_BPS
                || (t.bonusBps == 0 && t.fixedBonus == 0)
        ) revert InvalidCampaign();
        mapping(uint256 => uint256) storage nonces = _partnerNonces[t.partnerId];
        _revertIf(_checkFresh(nonces, p.signer, nonce, deadline));
        // A static struct encodes in place: this is the EIP-712 struct hash of its fields.
        _revertIf(_checkSigner(keccak256(abi.encode(_CAMPAIGN_TYPEHASH, t, nonce, deadline)), r, vs, p.signer));
        _spendNonce(nonces, nonce);
        campaignId = ++_campaignCount;
        _campaigns[campaignId] = t;
        emit CampaignCreated(
            campaignId, t.partnerId, t.start, t.end, t.bonusBps, t.fixedBonus, t.minSpend, t.tierMask, t.budget
        );
    }

    /// @notice A campaign's terms and the bonus points it has issued (r2); a partner id of 0:
    /// no such campaign.
    function campaign(uint64 campaignId) external view returns (CampaignTerms memory terms, uint256 spent) {
        return (_campaigns[campaignId], _campaignSpent[campaignId]);
    }

    /// @notice Number of campaigns registered; ids run from 1 to this (r2).
    function campaignCount() external view returns (uint64) {
        return _campaignCount;
    }

    /// @notice Applies a scheduled change whose notice period is over. Anyone may call it.
    function applyChange(uint256 changeId) external {
        Change storage c = _changes[changeId];
        if (c.state != 1) revert UnknownChange(changeId);
        if (block.timestamp < c.effectiveAt) revert ChangeNotDue(changeId, c.effectiveAt);
        _apply(changeId);
    }

    /// @notice Withdraws a scheduled change before it applies.
    function cancelChange(uint256 changeId) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _cancel(changeId);
    }

    /// @notice Withdraws a scheduled signer change with the partner's current key: its
    /// EIP-712 signature over `CancelChange(partnerId, changeId)`. Anyone may submit it.
    function cancelSignerChange(uint256 changeId, bytes32 r, bytes32 vs) external {
        Change storage c = _changes[changeId];
        if (c.state != 1 || c.kind != CHANGE_SIGNER) revert UnknownChange(changeId);
        bytes32 structHash = keccak256(abi.encode(CANCEL_CHANGE_TYPEHASH, c.partnerId, changeId));
        _revertIf(_checkSigner(structHash, r, vs, _partners[c.partnerId].signer));
        _cancel(changeId);
    }

    /// @notice Stops every balance change until `unpause`.
    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _pause();
    }

    /// @notice Lets balances change again.
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    // ================================================================ views

    /// @notice Seconds between scheduling a programme change and its effect.
    function noticePeriod() external view returns (uint64) {
        return _noticePeriod;
    }

    /// @notice Number of changes ever scheduled; ids run from 1 to this.
    function changeCount() external view returns (uint256) {
        return _changeCount;
    }

    /// @notice A scheduled change: its kind, state (1 pending, 2 applied, 3 cancelled), partner
    /// (0 for programme-wide changes), effective time and ABI-encoded arguments.
    function changeOf(uint256 changeId) external view returns (Change memory) {
        return _changes[changeId];
    }

    // ================================================================ internals

    /// @dev Records a change effective after the notice period, or applies it at once when
    /// the period is zero or no partner exists yet (nobody holds or issues points then: the
    /// programme a deployment starts with is not a change).
    function _schedule(uint8 kind, uint32 partnerId, bytes memory data) private returns (uint256 changeId) {
        changeId = ++_changeCount;
        uint64 notice = _partnerCount == 0 ? 0 : _noticePeriod;
        uint64 effectiveAt = uint64(block.timestamp) + notice;
        _changes[changeId] = Change(kind, 1, partnerId, effectiveAt, data);
        emit ChangeScheduled(changeId, kind, partnerId, effectiveAt, data);
        if (notice == 0) _apply(changeId);
    }

    function _apply(uint256 changeId) private {
        Change storage c = _changes[changeId];
        c.state = 2;
        (uint8 kind, uint32 partnerId) = (c.kind, c.partnerId);
        if (kind == CHANGE_EXPIRY) {
            uint16 months = abi.decode(c.data, (uint16));
            _expiryMonths = months;
            emit ExpiryPolicySet(months);
        } else if (kind == CHANGE_TIERS) {
            Tier[] memory table = abi.decode(c.data, (Tier[]));
            delete _tiers;
            for (uint256 i = 0; i < table.length; ++i) {
                _tiers.push(table[i]);
            }
            emit TiersSet(table);
        } else if (kind == CHANGE_POINT_VALUE) {
            (uint256 value, bytes3 currency) = abi.decode(c.data, (uint256, bytes3));
            (_pointValue, _pointCurrency) = (value, currency);
            emit PointValueSet(value, currency);
        } else if (kind == _CHANGE_DEBT_POLICY) {
            bool allowed = abi.decode(c.data, (bool));
            _debtAllowed = allowed;
            emit DebtPolicySet(allowed);
        } else if (kind == CHANGE_PRICES) {
            (uint128 issue, uint128 redemption) = abi.decode(c.data, (uint128, uint128));
            _prices[partnerId] = PartnerPrices(issue, redemption);
            emit PartnerPricesSet(partnerId, issue, redemption);
        } else {
            PartnerCore storage p = _partners[partnerId];
            if (kind == CHANGE_RATE) {
                (p.ratePoints, p.ratePerMinorUnits) = abi.decode(c.data, (uint32, uint32));
            } else {
                p.signer = abi.decode(c.data, (address));
            }
            emit PartnerUpdated(partnerId, p.signer, p.ratePoints, p.ratePerMinorUnits);
        }
        emit ChangeApplied(changeId, kind, partnerId);
    }

    function _cancel(uint256 changeId) private {
        Change storage c = _changes[changeId];
        if (c.state != 1) revert UnknownChange(changeId);
        c.state = 3;
        emit ChangeCancelled(changeId, c.kind, c.partnerId);
    }

    /// @dev Reverts with an encoded custom error, if any (single calls, not batch entries).
    function _revertIf(bytes memory err) private pure {
        if (err.length != 0) {
            assembly ("memory-safe") {
                revert(add(err, 32), mload(err))
            }
        }
    }
}
