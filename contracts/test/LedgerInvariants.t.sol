// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ICoalitionPoints} from "../ICoalitionPoints.sol";
import {ILedger} from "./ILedger.sol";
import {LedgerGhost} from "./LedgerGhost.sol";
import {LedgerHandler} from "./LedgerHandler.sol";
import {vm} from "./Vm.sol";

/// @notice Deploys revision 2 from the committed artifacts as `Ledger.deploy` does (programme
/// module, admin module, ledger), with a 7-day notice period.
/// @dev The artifacts are what `loyalty compile` built and the Python suite tests, so forge
/// compiles only the test contracts.
abstract contract LedgerDeployment {
    /// @dev Slot of `LedgerBase._accounts` (solc storageLayout of CoalitionPoints: ERC20 0-4,
    /// AccessControl 5, DefaultAdminRules 6-7, Pausable 8, EIP712 9-10, then LedgerBase).
    uint256 internal constant ACCOUNTS_SLOT = 11;
    uint256 internal constant MAX_RING = 121;

    function _deploy(address operator) internal returns (ILedger) {
        address programs = _create(_artifact("CoalitionPointsPrograms"), "");
        address module = _create(_artifact("CoalitionPointsAdmin"), abi.encode(programs));
        address ledger = _create(
            _artifact("CoalitionPoints"),
            abi.encode("Coalition Points", "PTS", operator, uint48(3 days), uint64(7 days), module)
        );
        vm.label(programs, "programs");
        vm.label(module, "admin module");
        vm.label(ledger, "ledger");
        return ILedger(ledger);
    }

    /// @dev From `contracts/artifacts/`, or from `$LEDGER_ARTIFACTS` (a directory under
    /// build/forge/, where a bug-injection run puts a mutated build: see docs/contracts.md).
    function _artifact(string memory name) internal view returns (bytes memory) {
        string memory dir = vm.envOr("LEDGER_ARTIFACTS", string("contracts/artifacts"));
        return vm.parseJsonBytes(vm.readFile(string.concat(dir, "/", name, ".json")), ".bytecode");
    }

    function _create(bytes memory code, bytes memory args) internal returns (address deployed) {
        bytes memory init = abi.encodePacked(code, args);
        assembly ("memory-safe") {
            deployed := create(0, add(init, 0x20), mload(init))
        }
        require(deployed != address(0), "deployment failed");
    }

    /// @dev The member's packed `Account` word: earnMonth 24, earnedInMonth 56, windowTotal 56,
    /// tailExpiry 24, tailPoints 56, head 16, count 16, flags 8 (lowest bits first).
    function _account(ILedger ledger, address member)
        internal
        view
        returns (uint256 earnMonth, uint256 tailPoints, uint256 count, uint256 flags)
    {
        uint256 word = uint256(vm.load(address(ledger), keccak256(abi.encode(member, ACCOUNTS_SLOT))));
        earnMonth = word & 0xFFFFFF;
        tailPoints = (word >> 160) & type(uint56).max;
        count = (word >> 232) & 0xFFFF;
        flags = word >> 248;
    }
}

/// @notice Invariants of the points ledger (revision 2), checked by forge after every handler call.
contract LedgerInvariantsTest is LedgerDeployment {
    ILedger internal ledger;
    LedgerHandler internal handler;
    address[6] internal actors;

    function setUp() public {
        address operator0 = vm.addr(0x0F0);
        address operator1 = vm.addr(0x0F1);
        ledger = _deploy(operator0);
        handler = new LedgerHandler(ledger, operator0, operator1);
        vm.label(address(handler), "handler");
        actors = handler.allActors();
        // The account word is where the layout says: the seeded member 0 holds ten buckets.
        (uint256 earnMonth, uint256 tailPoints, uint256 count,) = _account(ledger, handler.actors(0));
        require(earnMonth != 0 && tailPoints != 0 && count == 9, "Account slot layout differs");
    }

    /// @notice Forge fuzzes only the handler (StdInvariant's targetContract, declared by hand).
    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// @notice Every invariant, after every handler call. One invariant function on purpose:
    /// forge runs a whole campaign (runs x depth calls) per `invariant_` function.
    function invariant_ledgerAgreesWithTheGhost() public view {
        uint256 sum = _membersAgreeWithTheGhost();
        require(ledger.totalSupply() == sum, "totalSupply != sum of balances");
        _partnersAgreeWithTheGhost();
        _breakageAgreesWithTheGhost();
        _settingsAgreeWithTheGhost();
        _changesAgreeWithTheGhost();
        _campaignsAgreeWithTheGhost();
    }

    /// @dev (r2) Every campaign's spent budget is the ghost's and never above its budget.
    function _campaignsAgreeWithTheGhost() internal view {
        uint256 n = handler.ghostCampaignCount();
        require(ledger.campaignCount() == n, "campaign count");
        for (uint64 id = 1; id <= n; ++id) {
            (ICoalitionPoints.CampaignTerms memory terms, uint256 spent) = ledger.campaign(id);
            (uint256 budget, uint256 ghostSpent) = handler.ghostCampaign(id);
            require(terms.budget == budget && spent == ghostSpent, "campaign spent != ghost");
            require(spent <= budget, "campaign spent beyond its budget");
        }
    }

    /// @dev Per member: the buckets (`expiringOf`, each month once, ascending) sum to the
    /// balance and equal the ghost's; the ring is within its bound, holds what the ghost says
    /// (unswept expired buckets included) and is empty when the tail is; qualifying points,
    /// tier (earned or assigned), assigned tier and account flags equal the ghost's; ERC-20
    /// allowances equal the ghost's. Returns the sum of balances (only actors ever hold points).
    function _membersAgreeWithTheGhost() internal view returns (uint256 sum) {
        for (uint256 i = 0; i < actors.length; ++i) {
            address a = actors[i];
            LedgerGhost.MemberView memory g = handler.ghostMemberView(a);
            sum += _bucketsAgree(a, g);
            _accountAgrees(a, g);
            for (uint256 j = 0; j < actors.length; ++j) {
                require(ledger.allowance(a, actors[j]) == g.approvals[j], "ERC-20 allowance");
            }
        }
    }

    function _bucketsAgree(address a, LedgerGhost.MemberView memory g) internal view returns (uint256 balance) {
        (uint24[] memory months, uint256[] memory points) = ledger.expiringOf(a);
        for (uint256 j = 0; j < months.length; ++j) {
            require(j == 0 || months[j] > months[j - 1], "buckets out of order or duplicated");
            balance += points[j];
        }
        require(ledger.balanceOf(a) == balance, "balance != sum of its buckets");
        require(
            keccak256(abi.encode(months, points)) == keccak256(abi.encode(g.months, g.points)), "buckets != ghost buckets"
        );
        (, uint256 tailPoints, uint256 count,) = _account(ledger, a);
        require(count <= MAX_RING && months.length <= MAX_RING + 1, "ring beyond its bound");
        require(tailPoints != 0 || count == 0, "ring holds buckets behind an empty tail");
        require(count + (tailPoints != 0 ? 1 : 0) == g.held, "buckets held (swept or not) != ghost");
        // The audit trail: the member's Transfer events add up to its balance plus what has
        // expired without being swept yet (a sweep emits Expired and Transfer to 0).
        require(g.eventBalance == int256(balance + g.unswept), "Transfer events do not replay to the balance");
    }

    function _accountAgrees(address a, LedgerGhost.MemberView memory g) internal view {
        (uint256 earnMonth,,, uint256 flags) = _account(ledger, a);
        require((earnMonth != 0) == g.member.earned, "earn month set != ghost");
        require(flags == (g.member.flagged ? 1 : 0) | (g.debt != 0 ? 2 : 0), "account flags != ghost");
        require(ledger.debtOf(a) == g.debt, "debt != ghost");
        (uint8 tier, uint64 until) = ledger.assignedTier(a);
        require(tier == g.member.tier && until == g.member.until, "assigned tier != ghost");
        require(ledger.qualifyingPoints(a) == g.qualifying, "qualifying points");
        require(ledger.tierOf(a) == g.tier, "tier");
    }

    /// @dev Each partner's settings, prices and totals equal the ghost's; it never issued more
    /// than its allowances allowed; everything it issued was signed with its current key; and
    /// the supply is issued (earns and awards) + refunded - reversed - redeemed - expired; the
    /// last redemptions' refunded points (`refundedOf`) are the ghost's.
    function _partnersAgreeWithTheGhost() internal view {
        uint32 count = ledger.partnerCount();
        require(count == handler.ghostPartnerCount(), "partner count");
        uint256 issued;
        uint256 reversed;
        uint256 redeemed;
        uint256 refunded;
        for (uint32 pid = 1; pid <= count + 1; ++pid) {
            ICoalitionPoints.PartnerInfo memory info = ledger.partner(pid);
            LedgerGhost.PartnerView memory v = handler.ghostPartnerView(pid);
            LedgerGhost.GhostPartner memory g = v.partner;
            require(info.signer == g.signer, "partner signer");
            require(info.active == g.active, "partner active");
            require(info.ratePoints == g.ratePoints && info.ratePerMinorUnits == g.ratePerMinorUnits, "partner rate");
            require(info.activeFrom == g.activeFrom, "partner activeFrom");
            require(info.allowance == g.allowance, "partner allowance");
            require(info.issued == g.issued && info.awarded == g.awarded, "partner issued / awarded");
            require(info.reversed == g.reversed && info.redeemed == g.redeemed, "partner reversed / redeemed");
            (uint128 issuePrice, uint128 redemptionPrice) = ledger.partnerPrices(pid);
            require(issuePrice == g.issuePrice && redemptionPrice == g.redemptionPrice, "partner prices");
            require(info.issued <= v.allowedTotal, "issued beyond what the allowances allowed");
            require(info.awarded <= info.issued, "awarded beyond issued");
            require(info.issued == v.signedIssued, "issued != what its current keys signed");
            require(v.forgedIssued == 0, "issued on a signature of another key");
            require(ledger.refunded(pid) == g.refunded, "partner refunded");
            (issued, reversed, redeemed) = (issued + info.issued, reversed + info.reversed, redeemed + info.redeemed);
            refunded += g.refunded;
        }
        // (r2) Debt is no negative supply: the points reversals took beyond balances still owed.
        uint256 debts;
        for (uint256 i = 0; i < actors.length; ++i) {
            debts += ledger.debtOf(actors[i]);
        }
        require(ledger.totalDebt() == debts && debts == handler.ghostTotalDebt(), "totalDebt != sum of debts");
        require(
            ledger.totalSupply() == issued + refunded + debts - reversed - redeemed - handler.ghostExpired(),
            "supply != issued + refunded - reversed - redeemed - expired + debt"
        );
        // Per redemption: what was refunded of it, never more than it burnt.
        uint256 n = handler.ghostRedemptionCount();
        for (uint256 i = n > 8 ? n - 8 : 0; i < n; ++i) {
            (bytes32 leaf, uint256 points) = handler.ghostRedemption(i);
            uint256 done = ledger.refundedOf(leaf);
            require(done == handler.ghostRefundedOf(leaf) && done <= points, "refundedOf a redemption");
        }
    }

    /// @dev What expired at the end of each past month (`expiredIn`) is the ghost's, and the
    /// `Expired` events add up to what the ghost says the ledger swept.
    function _breakageAgreesWithTheGhost() internal view {
        (uint256 swept, uint256 expiredEvents) = handler.ghostSwept();
        require(swept == expiredEvents, "Expired events != points swept");
        (uint24[] memory months, uint256[] memory points) = handler.ghostBreakage();
        for (uint256 i = 0; i < months.length; ++i) {
            require(ledger.expiredIn(months[i]) == points[i], "expiredIn != ghost breakage");
        }
    }

    /// @dev The programme settings, switches, notice period and admin equal the ghost's.
    function _settingsAgreeWithTheGhost() internal view {
        require(ledger.expiryMonths() == handler.ghostExpiryMonths(), "expiry policy");
        require(ledger.transfersEnabled() == handler.ghostTransfers(), "transfers switch");
        require(ledger.paused() == handler.ghostPaused(), "paused");
        (uint256 value, bytes3 currency) = ledger.pointValue();
        require(value == handler.ghostPointValue() && currency == handler.ghostPointCurrency(), "point value");
        require(keccak256(abi.encode(ledger.tiers())) == keccak256(abi.encode(handler.ghostTiers())), "tier table");
        require(ledger.defaultAdmin() == handler.admin(), "default admin");
        require(ledger.noticePeriod() == 7 days, "notice period");
        require(ledger.earnBatchCount() == handler.ghostBatchCount(), "earn batch count");
        require(ledger.debtAllowed() == handler.ghostDebtAllowed(), "debt policy");
    }

    /// @dev Every scheduled change's kind, partner, state and effective time equal the ghost's.
    function _changesAgreeWithTheGhost() internal view {
        uint256 n = handler.ghostChangeCount();
        require(ledger.changeCount() == n, "change count");
        for (uint256 id = 1; id <= n; ++id) {
            ILedger.Change memory c = ledger.changeOf(id);
            LedgerGhost.GhostChange memory g = handler.ghostChange(id);
            require(c.kind == g.kind && c.partnerId == g.partnerId, "change kind / partner");
            require(c.state == g.state, "change state");
            require(c.effectiveAt == g.effectiveAt, "change effective time");
        }
    }
}
