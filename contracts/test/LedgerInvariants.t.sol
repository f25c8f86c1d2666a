// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ICoalitionPoints} from "../ICoalitionPoints.sol";
import {ILedger} from "./ILedger.sol";
import {LedgerHandler} from "./LedgerHandler.sol";
import {vm} from "./Vm.sol";

/// @notice Invariants of the points ledger, checked by forge after every handler call.
/// @dev Deploys the committed artifact (what `loyalty compile` built and the Python suite
/// tests), not a build of its own: forge then compiles only these test contracts.
contract LedgerInvariantsTest {
    ILedger internal ledger;
    LedgerHandler internal handler;

    function setUp() public {
        bytes memory code = vm.parseJsonBytes(vm.readFile("contracts/artifacts/CoalitionPoints.json"), ".bytecode");
        address operator0 = vm.addr(0x0F0);
        address operator1 = vm.addr(0x0F1);
        bytes memory init = abi.encodePacked(code, abi.encode("Coalition Points", "PTS", operator0, uint48(3 days)));
        address deployed;
        assembly ("memory-safe") {
            deployed := create(0, add(init, 0x20), mload(init))
        }
        require(deployed != address(0), "deployment failed");
        ledger = ILedger(deployed);
        handler = new LedgerHandler(ledger, operator0, operator1);
        vm.label(deployed, "ledger");
        vm.label(address(handler), "handler");
    }

    /// @notice Forge fuzzes only the handler (StdInvariant's targetContract, declared by hand).
    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// @notice Every invariant, after every handler call. One invariant function on purpose:
    /// forge runs a whole campaign (runs x depth calls) per `invariant_` function.
    function invariant_ledgerAgreesWithTheGhost() public view {
        _totalSupplyIsSumOfBalances();
        _balanceIsSumOfItsBuckets();
        _partnerLedgerIdentity();
        _tiersMatchTheGhost();
        _settingsMatchTheGhost();
    }

    /// @dev solmate's BalanceSum / OpenZeppelin's totalSupplyIsSumOfBalances: only the
    /// actors ever hold points, so their balances add up to the supply.
    function _totalSupplyIsSumOfBalances() internal view {
        uint256 sum;
        for (uint256 i = 0; i < handler.actorCount(); ++i) {
            sum += ledger.balanceOf(handler.actors(i));
        }
        require(ledger.totalSupply() == sum, "totalSupply != sum of balances");
    }

    /// @dev Each balance is the sum of its expiry buckets, listed once each in order, and
    /// both equal the ghost's.
    function _balanceIsSumOfItsBuckets() internal view {
        for (uint256 i = 0; i < handler.actorCount(); ++i) {
            address a = handler.actors(i);
            (uint24[] memory months, uint256[] memory points) = ledger.expiringOf(a);
            (uint24[] memory ghostMonths, uint256[] memory ghostPoints) = handler.ghostSchedule(a);
            uint256 sum;
            for (uint256 j = 0; j < months.length; ++j) {
                require(j == 0 || months[j] > months[j - 1], "buckets out of order or duplicated");
                sum += points[j];
            }
            require(ledger.balanceOf(a) == sum, "balance != sum of its buckets");
            require(sum == handler.ghostBalance(a), "balance != ghost balance");
            require(keccak256(abi.encode(months, points)) == keccak256(abi.encode(ghostMonths, ghostPoints)), "buckets != ghost buckets");
        }
    }

    /// @dev Each partner's settings and totals equal the ghost's, and the supply is what
    /// the partners issued less what was redeemed, reversed and has expired.
    function _partnerLedgerIdentity() internal view {
        require(ledger.partnerCount() == handler.ghostPartnerCount(), "partner count");
        uint256 issued;
        uint256 reversed;
        uint256 redeemed;
        for (uint32 pid = 1; pid <= 6; ++pid) {
            ICoalitionPoints.PartnerInfo memory info = ledger.partner(pid);
            (uint256 key,, bool active, uint32 rp, uint32 rpm, uint256 allowance, uint256 gi, uint256 gv, uint256 gr) =
                handler.ghostPartner(pid);
            require(info.signer == (key == 0 ? address(0) : vm.addr(key)), "partner signer");
            require(info.active == active && info.ratePoints == rp && info.ratePerMinorUnits == rpm, "partner settings");
            require(info.allowance == allowance, "partner allowance");
            require(info.issued == gi && info.reversed == gv && info.redeemed == gr, "partner totals");
            (issued, reversed, redeemed) = (issued + info.issued, reversed + info.reversed, redeemed + info.redeemed);
        }
        require(ledger.totalSupply() == issued - reversed - redeemed - handler.ghostExpired(), "supply != issued - reversed - redeemed - expired");
    }

    /// @dev Qualifying points and tiers equal the ghost's (trailing 12 months, net of reversals).
    function _tiersMatchTheGhost() internal view {
        for (uint256 i = 0; i < handler.actorCount(); ++i) {
            address a = handler.actors(i);
            require(ledger.qualifyingPoints(a) == handler.ghostQualifying(a), "qualifying points");
            require(ledger.tierOf(a) == handler.ghostTierIndex(a), "tier");
        }
    }

    /// @dev The operator's settings, the admin and the ERC-20 allowances equal the ghost's.
    function _settingsMatchTheGhost() internal view {
        require(ledger.expiryMonths() == handler.ghostExpiryMonths(), "expiry policy");
        require(ledger.transfersEnabled() == handler.ghostTransfers(), "transfers switch");
        require(ledger.paused() == handler.ghostPaused(), "paused");
        (uint256 value,) = ledger.pointValue();
        require(value == handler.ghostPointValue(), "point value");
        require(keccak256(abi.encode(ledger.tiers())) == keccak256(abi.encode(handler.ghostTiers())), "tier table");
        require(ledger.defaultAdmin() == handler.admin(), "default admin");
        for (uint256 i = 0; i < handler.actorCount(); ++i) {
            for (uint256 j = 0; j < handler.actorCount(); ++j) {
                address o = handler.actors(i);
                address s = handler.actors(j);
                require(ledger.allowance(o, s) == handler.ghostApproval(o, s), "ERC-20 allowance");
            }
        }
    }
}
