// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ICoalitionPoints} from "../ICoalitionPoints.sol";
import {ILedger} from "./ILedger.sol";
import {LedgerDeployment} from "./LedgerInvariants.t.sol";
import {vm, Vm} from "./Vm.sol";

/// @notice Regression tests of two revision-2 defects the invariant suite led to (found on
/// 2026-12-01, fixed the same day): each failed on the contract before its fix and passes now.
/// Run with the invariant suite by tests/test_forge_invariants.py; alone:
///   node_modules/.bin/forge test --match-contract LedgerBugsTest -vv
contract LedgerBugsTest is LedgerDeployment {
    bytes32 internal constant EARN_TYPEHASH = keccak256(
        "Earn(uint32 partnerId,address member,uint256 spend,uint256 maxPoints,bytes32 receiptRef,uint256 nonce,uint256 deadline)"
    );
    bytes32 internal constant AWARD_TYPEHASH = keccak256(
        "Award(uint32 partnerId,address member,uint256 points,uint8 reason,bytes32 receiptRef,uint256 nonce,uint256 deadline)"
    );
    bytes32 internal constant REVERSE_TYPEHASH = keccak256(
        "Reverse(uint32 partnerId,bytes32 earnLeaf,uint256 points,bytes32 receiptRef,uint256 nonce,uint256 deadline)"
    );
    bytes32 internal constant MIGRATE_TYPEHASH = keccak256("Migrate(address from,address to,uint256 nonce,uint256 deadline)");
    uint256 internal constant PARTNER_KEY = 0xFA57;
    uint256 internal constant MEMBER_KEY = 0xA11CE;
    uint256 internal constant NEW_WALLET_KEY = 0xB0B;
    uint256 internal constant OTHER_KEY = 0xC0C;

    ILedger internal ledger;
    address internal operator = vm.addr(0x0F0);
    address internal member = vm.addr(MEMBER_KEY);
    uint256 internal nonce;

    error Rejected(string what, bytes reason);

    function setUp() public {
        vm.warp(1_781_524_800); // 2026-06-15 12:00 UTC
        ledger = _deploy(operator);
    }

    /// @notice docs/contracts.md: "tail + ring hold at most 122 buckets whatever the sequence of
    /// policy changes, transfers, migrations and time (`_MAX_RING` = 121; reaching it would be the
    /// rejection `TooManyBuckets`, and cannot happen)". It happens, and to a valid earn:
    /// `_planEarn` (and `_award`) reject with `TooManyBuckets` whenever the ring holds 121
    /// buckets whose earliest is live and the new expiry is not the tail's, without asking
    /// whether the expiry is already in the ring. With 122 live buckets every live month is
    /// taken, so the earn would merge into an existing bucket and needs no slot.
    /// Reached by a member holding never-expiring points (earned under policy 0) who then earns
    /// every month for 121 months under a 120-month policy: from then on the second earn (and
    /// any award) of a month is rejected until the month ends.
    function test_fullRingTakesAnEarnThatMergesIntoAnExistingBucket() public {
        _fillTheRing();
        // A second purchase this month: its expiry month is the newest dated bucket, already held.
        _earn(member, 10);
    }

    /// @notice The same check in the programme module rejects an award (`_award`).
    function test_fullRingTakesAnAwardThatMergesIntoAnExistingBucket() public {
        _fillTheRing();
        _award(10);
    }

    /// @dev Never-expiring points, then 121 monthly earns under a 120-month policy: 122 live
    /// buckets, the ring at `_MAX_RING` (121) behind a never-expiring tail. Then shows that the
    /// ledger itself can merge points of the newest dated month into that ring: a transfer of
    /// such points into the member succeeds.
    function _fillTheRing() internal {
        vm.prank(operator);
        ledger.setExpiryMonths(0); // before the first partner: applies at once
        vm.prank(operator);
        ledger.addPartner(vm.addr(PARTNER_KEY), 1, 1, "EUR", type(uint128).max);
        vm.warp(block.timestamp + 8 days);
        _earn(member, 10); // a never-expiring bucket (the tail from now on)
        vm.prank(operator);
        uint256 id = ledger.setExpiryMonths(120);
        uint256 july2026 = 2026 * 12 + 6;
        _warpToMonth(july2026);
        ledger.applyChange(id);
        for (uint256 k = 0; k <= 120; ++k) {
            _warpToMonth(july2026 + k);
            _earn(member, 10); // expires in the current month + 120: one new bucket a month
        }
        (uint24[] memory months,) = ledger.expiringOf(member);
        require(months.length == 122, "setup: the member holds 122 live buckets");
        address other = vm.addr(OTHER_KEY);
        _earn(other, 10); // same expiry month as the member's newest dated bucket
        vm.prank(operator);
        ledger.setTransfersEnabled(true);
        vm.prank(other);
        ledger.transfer(member, 10); // merges into the member's ring: no new bucket needed
        (months,) = ledger.expiringOf(member);
        require(months.length == 122 && ledger.balanceOf(member) == 1_230, "setup: the transfer merged");
    }

    /// @notice SPEC section 2: a reversal takes back points of an earn "only while that earn's
    /// points have not expired", and (r2) migration moves "all its points ... debt and tier
    /// history to a new address of its own". The ledger proves a reversal against the earn's
    /// leaf, which names the address the points were earned to, and burns from that address:
    /// after a migration the earn's points live on at the new address and cannot be reversed
    /// (`InsufficientPoints` at the old one; revision 2 has no debt to record the shortfall).
    /// A member can buy, earn, migrate to a fresh address of its own and return the goods:
    /// the partner's refund keeps the points alive. Should the old address hold points again, the
    /// reversal takes those instead and the qualifying points leave the old address's window,
    /// not the new one's.
    function test_reversalOfAnEarnFollowsItsPointsAfterMigration() public {
        vm.prank(operator);
        ledger.addPartner(vm.addr(PARTNER_KEY), 1, 1, "EUR", type(uint128).max);
        vm.warp(block.timestamp + 8 days);
        ICoalitionPoints.EarnOp memory op = _earn(member, 1_000);
        address wallet = vm.addr(NEW_WALLET_KEY);
        (bytes32 r, bytes32 vs) =
            _sign(MEMBER_KEY, keccak256(abi.encode(MIGRATE_TYPEHASH, member, wallet, 1, block.timestamp + 1 days)));
        ledger.migrate(member, wallet, 1, block.timestamp + 1 days, r, vs);
        require(ledger.balanceOf(wallet) == 1_000 && ledger.balanceOf(member) == 0, "setup: migrated");
        // The purchase is refunded: the partner reverses the whole earn, whose points are live.
        ICoalitionPoints.ReverseOp[] memory ops = new ICoalitionPoints.ReverseOp[](1);
        ops[0].partnerId = 1;
        ops[0].points = 1_000;
        ops[0].receiptRef = keccak256("refund");
        ops[0].nonce = ++nonce;
        ops[0].deadline = block.timestamp + 1 days;
        ops[0].earn = ICoalitionPoints.EarnRecord(
            ledger.earnBatchCount(), member, op.receiptRef, op.spend, 1_000, ledger.currentMonth(), new bytes32[](0), 0
        );
        bytes32 leaf = keccak256(abi.encode(uint32(1), member, op.receiptRef, op.spend, uint256(1_000), ledger.currentMonth()));
        (ops[0].r, ops[0].vs) = _sign(
            PARTNER_KEY,
            keccak256(abi.encode(REVERSE_TYPEHASH, uint32(1), leaf, uint256(1_000), ops[0].receiptRef, ops[0].nonce, ops[0].deadline))
        );
        vm.recordLogs();
        if (ledger.reverseBatch(ops) != 1) revert Rejected("reversal of a live earn after migration", _rejection());
    }

    // ---------------------------------------------------------------- helpers

    function _earn(address to, uint256 spend) internal returns (ICoalitionPoints.EarnOp memory op) {
        ICoalitionPoints.EarnOp[] memory ops = new ICoalitionPoints.EarnOp[](1);
        op = ICoalitionPoints.EarnOp(
            1, to, spend, type(uint256).max, 0, keccak256(abi.encode("receipt", ++nonce)), nonce, block.timestamp + 1 days, 0, 0
        );
        (op.r, op.vs) = _sign(
            PARTNER_KEY,
            keccak256(abi.encode(EARN_TYPEHASH, op.partnerId, op.member, op.spend, op.maxPoints, op.receiptRef, op.nonce, op.deadline))
        );
        ops[0] = op;
        vm.recordLogs();
        if (ledger.earnBatch(ops) != 1) revert Rejected("earn", _rejection());
    }

    function _award(uint256 points) internal {
        ICoalitionPoints.AwardOp[] memory ops = new ICoalitionPoints.AwardOp[](1);
        ICoalitionPoints.AwardOp memory op = ICoalitionPoints.AwardOp(
            1, member, points, 1, keccak256(abi.encode("award", ++nonce)), nonce, block.timestamp + 1 days, 0, 0
        );
        (op.r, op.vs) = _sign(
            PARTNER_KEY,
            keccak256(abi.encode(AWARD_TYPEHASH, op.partnerId, op.member, op.points, op.reason, op.receiptRef, op.nonce, op.deadline))
        );
        ops[0] = op;
        vm.recordLogs();
        if (ledger.awardBatch(ops) != 1) revert Rejected("award", _rejection());
    }

    /// @dev Day 15 of `month` (year * 12 + month - 1), noon UTC.
    function _warpToMonth(uint256 month) internal {
        (uint256 y, uint256 m) = (month / 12, month % 12 + 1);
        if (m <= 2) y -= 1;
        uint256 era = y / 400;
        uint256 yoe = y - era * 400;
        uint256 doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + 14;
        uint256 doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        vm.warp((era * 146_097 + doe - 719_468) * 86_400 + 12 hours);
        require(ledger.currentMonth() == month, "warp: month");
    }

    /// @dev The reason of the last batch's `OperationRejected` event.
    function _rejection() internal returns (bytes memory reason) {
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i = 0; i < logs.length; ++i) {
            if (logs[i].topics[0] == keccak256("OperationRejected(uint8,uint256,bytes32,bytes)")) {
                (, reason) = abi.decode(logs[i].data, (uint256, bytes));
            }
        }
    }

    function _sign(uint256 key, bytes32 structHash) internal view returns (bytes32 r, bytes32 vs) {
        bytes32 domain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("Coalition Points"),
                keccak256("1"),
                block.chainid,
                address(ledger)
            )
        );
        (uint8 v, bytes32 r_, bytes32 s) = vm.sign(key, keccak256(abi.encodePacked("\x19\x01", domain, structHash)));
        (r, vs) = (r_, bytes32(uint256(s) | (uint256(v - 27) << 255)));
    }
}
