// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ICoalitionPoints} from "../ICoalitionPoints.sol";
import {ILedger} from "./ILedger.sol";
import {vm} from "./Vm.sol";

/// @notice Drives every state-changing function of the ledger with bounded inputs and keeps
/// ghost state: what each balance, bucket, tier and partner total must be (horsefacts'
/// weth-invariant-testing style). One external function per entry point of the ledger, plus
/// `warp`; fixed actors (four members, two operator keys, a stranger, partner keys).
/// @dev A call the ghost expects to succeed is made directly, so with `fail_on_revert` any
/// revert (a whole batch reverting, say) fails the run; a call the ghost expects to be refused
/// goes through try/catch and must revert with the expected error.
contract LedgerHandler {
    uint24 internal constant NEVER = type(uint24).max;
    uint256 internal constant BPS = 10_000;
    uint256 internal constant MAX_SPEND = type(uint64).max;
    uint256 internal constant MAX_OP_POINTS = type(uint48).max;
    uint32 internal constant MAX_PARTNERS = 5;
    uint256 internal constant ACTORS = 4;
    uint256 internal constant FAR = 2 ** 40;

    struct GhostPartner {
        uint256 key;
        uint256 retiredKey;
        bool active;
        uint32 ratePoints;
        uint32 ratePerMinorUnits;
        uint256 allowance;
        uint256 issued;
        uint256 reversed;
        uint256 redeemed;
    }

    /// @dev An accepted earn, for reversals (its record's proof has at most one sibling).
    struct GhostEarn {
        uint32 partnerId;
        uint64 batchId;
        address member;
        bytes32 receiptRef;
        uint256 spend;
        uint256 points;
        uint32 earnMonth;
        bytes32 sibling;
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

    // ghost state
    mapping(uint32 => GhostPartner) public ghostPartner;
    uint32 public ghostPartnerCount;
    mapping(address => mapping(uint24 => uint256)) public ghostBucket;
    mapping(address => uint24[]) internal _ghostMonths; // sorted distinct expiries ever credited
    mapping(address => mapping(uint256 => uint256)) public ghostEarned; // month -> points (net of reversals)
    ICoalitionPoints.Tier[] internal _ghostTiers;
    uint16 public ghostExpiryMonths = 12;
    bool public ghostPaused;
    bool public ghostTransfers;
    uint256 public ghostPointValue;
    uint24 public ghostMonth;
    mapping(address => mapping(address => uint256)) public ghostApproval;
    mapping(uint32 => mapping(uint256 => bool)) internal _partnerNonceUsed;
    mapping(address => mapping(uint256 => bool)) internal _memberNonceUsed;
    mapping(bytes32 => uint256) public ghostReversedOf;
    GhostEarn[] internal _earns;
    ICoalitionPoints.EarnOp internal _lastEarn;
    ICoalitionPoints.RedeemOp internal _lastRedeem;
    uint256 internal _nonce;

    /// @notice How many calls each handler made that the ledger applied / refused (for the log).
    mapping(bytes4 => uint256) public applied;
    mapping(bytes4 => uint256) public refused;

    constructor(ILedger ledger_, address operator0, address operator1) {
        ledger = ledger_;
        operators = [operator0, operator1];
        _domainSeparator = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("Coalition Points"),
                keccak256("1"),
                block.chainid,
                address(ledger_)
            )
        );
        for (uint256 i = 0; i < ACTORS; ++i) {
            _actorKeys[i] = 0xA11CE0 + i;
            actors[i] = vm.addr(_actorKeys[i]);
        }
        _ghostTiers.push(ICoalitionPoints.Tier(0, uint32(BPS)));
        _ghostTiers.push(ICoalitionPoints.Tier(500, 12_500));
        _ghostTiers.push(ICoalitionPoints.Tier(2_000, 20_000));
        _warpTo(2026 * 12 + 5);
        _seed();
    }

    /// @dev Registers three partners and gives the members some history: six, four, two and
    /// no months of one earn each, so a member holds several expiry buckets from the first
    /// call (the ring's bugs need them), then switches transfers on.
    function _seed() internal {
        vm.prank(operators[0]);
        ledger.setTiers(_ghostTiers);
        _addPartner(1, 100, 10 ** 12);
        _addPartner(3, 200, 10 ** 12);
        _addPartner(5, 1, 2_000_000);
        uint8[4] memory history = [6, 4, 2, 0];
        for (uint256 age = 6; age > 0; --age) {
            _warpTo(ghostMonth + 1);
            for (uint256 i = 0; i < ACTORS; ++i) {
                if (history[i] >= age) _earn(1, actors[i], (i + 1) * 1_000 + age * 100, 0, false);
            }
        }
        _warpTo(ghostMonth + 1);
        vm.prank(operators[0]);
        ledger.setTransfersEnabled(true);
        ghostTransfers = true;
    }

    // ================================================================ signed batches

    /// @notice earnBatch with one or two earns: valid, signed by a wrong or retired key, or a replay.
    function earnBatch(uint256 partnerSeed, uint256 actorSeed, uint256 spend, uint256 variant, bool two) external {
        uint32 pid = uint32(_bound(partnerSeed, 1, MAX_PARTNERS + 1));
        spend = _spend(spend);
        if (!two) {
            _earn(pid, _actor(actorSeed), spend, variant % 8, true);
            return;
        }
        ICoalitionPoints.EarnOp[] memory ops = new ICoalitionPoints.EarnOp[](2);
        uint256[] memory points = new uint256[](2);
        ops[0] = _earnOp(pid, _actor(actorSeed), spend, variant % 8);
        points[0] = _ghostEarn(ops[0], variant % 8);
        ops[1] = _earnOp(pid, _actor(actorSeed % ACTORS + 1), spend / 2 + 1, 0);
        points[1] = _ghostEarn(ops[1], 0);
        _submitEarns(ops, points);
    }

    /// @notice redeemBatch with one redemption: valid, short of points, signed by a thief, or a replay.
    function redeemBatch(uint256 actorSeed, uint256 partnerSeed, uint256 points, uint256 variant) external {
        uint256 i = actorSeed % ACTORS;
        variant %= 6;
        ICoalitionPoints.RedeemOp[] memory ops = new ICoalitionPoints.RedeemOp[](1);
        if (variant == 5 && _lastRedeem.deadline != 0) {
            ops[0] = _lastRedeem;
        } else {
            uint32 pid = uint32(_bound(partnerSeed, 1, MAX_PARTNERS + 1));
            points = points % 16 == 0 ? 0 : _bound(points, 1, ghostBalance(actors[i]) + 3);
            ops[0] = _redeemOp(i, pid, points, variant == 4 ? 0xBAD : _actorKeys[i]);
        }
        bool ok = _ghostRedeem(ops[0], variant == 4);
        if (_paused(abi.encodeCall(ILedger.redeemBatch, (ops)))) return;
        uint256 accepted = ledger.redeemBatch(ops);
        require(accepted == (ok ? 1 : 0), "redeemBatch: accepted count differs from the ghost");
        _count(this.redeemBatch.selector, ok);
        if (ok) _lastRedeem = ops[0];
    }

    /// @notice reverseBatch with one reversal of an earlier earn: valid (maybe more than is
    /// left of it, or more than the member holds), by another partner, or with a retired key.
    function reverseBatch(uint256 earnSeed, uint256 points, uint256 variant) external {
        if (_earns.length == 0) return;
        GhostEarn memory e = _earns[earnSeed % _earns.length];
        points = _bound(points, 1, e.points + 1);
        variant %= 5;
        uint32 pid = e.partnerId;
        uint256 key = ghostPartner[pid].key;
        if (variant == 3) pid = uint32(pid % MAX_PARTNERS + 1); // another partner, maybe unknown
        if (variant == 3) key = ghostPartner[pid].key == 0 ? 0xBAD : ghostPartner[pid].key;
        if (variant == 4 && ghostPartner[pid].retiredKey != 0) key = ghostPartner[pid].retiredKey;
        ICoalitionPoints.ReverseOp[] memory ops = new ICoalitionPoints.ReverseOp[](1);
        ops[0] = _reverseOp(e, pid, points, key);
        bool ok = _ghostReverse(e, ops[0], key == ghostPartner[pid].key);
        if (_paused(abi.encodeCall(ILedger.reverseBatch, (ops)))) return;
        uint256 accepted = ledger.reverseBatch(ops);
        require(accepted == (ok ? 1 : 0), "reverseBatch: accepted count differs from the ghost");
        _count(this.reverseBatch.selector, ok);
    }

    /// @notice The public sweep over any set of members (and a non-member).
    function expire(uint256 mask) external {
        address[] memory list = new address[](ACTORS + 1);
        uint256 n;
        for (uint256 i = 0; i < ACTORS; ++i) {
            if (mask & (1 << i) != 0) list[n++] = actors[i];
        }
        if (mask & 16 != 0) list[n++] = stranger;
        assembly ("memory-safe") {
            mstore(list, n)
        }
        if (_paused(abi.encodeCall(ILedger.expire, (list)))) return;
        ledger.expire(list);
        _count(this.expire.selector, true);
    }

    // ================================================================ ERC-20

    /// @notice transfer between members, self-transfers included; on or off, paused or not.
    function transfer(uint256 fromSeed, uint256 toSeed, uint256 amount) external {
        address from = _actor(fromSeed);
        address to = _actor(toSeed);
        amount = amount % 8 == 0 ? ghostBalance(from) : _bound(amount, 0, ghostBalance(from) + 3);
        bytes4 expected = _transferError(from, amount);
        vm.prank(from);
        if (expected == bytes4(0)) {
            ledger.transfer(to, amount);
            _move(from, to, amount);
        } else {
            try ledger.transfer(to, amount) {
                revert("transfer: succeeded where the ghost expected a refusal");
            } catch (bytes memory err) {
                require(bytes4(err) == expected, "transfer: refused with another error");
            }
        }
        _count(this.transfer.selector, expected == bytes4(0));
    }

    /// @notice transferFrom by an approved (or not) member.
    function transferFrom(uint256 spenderSeed, uint256 ownerSeed, uint256 toSeed, uint256 amount) external {
        address spender = _actor(spenderSeed);
        address owner = _actor(ownerSeed);
        address to = _actor(toSeed);
        amount = amount % 8 == 0 ? ghostBalance(owner) : _bound(amount, 0, ghostBalance(owner) + 3);
        uint256 approved = ghostApproval[owner][spender];
        bytes4 expected =
            approved < amount ? ILedger.ERC20InsufficientAllowance.selector : _transferError(owner, amount);
        vm.prank(spender);
        if (expected == bytes4(0)) {
            ledger.transferFrom(owner, to, amount);
            if (approved != type(uint256).max) ghostApproval[owner][spender] = approved - amount;
            _move(owner, to, amount);
        } else {
            try ledger.transferFrom(owner, to, amount) {
                revert("transferFrom: succeeded where the ghost expected a refusal");
            } catch (bytes memory err) {
                require(bytes4(err) == expected, "transferFrom: refused with another error");
            }
        }
        _count(this.transferFrom.selector, expected == bytes4(0));
    }

    function approve(uint256 ownerSeed, uint256 spenderSeed, uint256 value) external {
        address owner = _actor(ownerSeed);
        address spender = _actor(spenderSeed);
        value = value % 5 == 0 ? type(uint256).max : _bound(value, 0, 5_000);
        vm.prank(owner);
        ledger.approve(spender, value);
        ghostApproval[owner][spender] = value;
        _count(this.approve.selector, true);
    }

    // ================================================================ operator

    /// @notice Lengthens, shortens (finding 1 b's path), 0 = never; above 120 refused.
    function setExpiryMonths(uint256 months, uint256 who) external {
        months = months % 3 == 0 ? _bound(months, 0, 14) : _bound(months, 0, 125);
        bytes4 expected = months > 120 ? ICoalitionPoints.InvalidExpiryMonths.selector : bytes4(0);
        if (_operatorCall(who, abi.encodeCall(ILedger.setExpiryMonths, (uint16(months))), expected)) {
            ghostExpiryMonths = uint16(months);
        }
    }

    /// @notice A new tier table of one to four rows, or a malformed one (refused).
    function setTiers(uint256 seed, uint256 who) external {
        uint256 n = 1 + seed % 4;
        ICoalitionPoints.Tier[] memory table = new ICoalitionPoints.Tier[](n);
        uint32[6] memory multipliers = [uint32(1), 5_000, 10_000, 12_500, 20_000, 1_000_000];
        table[0] = ICoalitionPoints.Tier(0, uint32(BPS));
        for (uint256 i = 1; i < n; ++i) {
            uint256 bits = seed >> (16 * i);
            table[i] = ICoalitionPoints.Tier(table[i - 1].threshold + 1 + uint64(bits % 2_000), multipliers[(bits >> 11) % 6]);
        }
        bool bad = (seed >> 80) % 5 == 0;
        if (bad) table[n - 1].multiplierBps = 0;
        bytes4 expected = bad ? ICoalitionPoints.InvalidTierTable.selector : bytes4(0);
        if (_operatorCall(who, abi.encodeCall(ILedger.setTiers, (table)), expected)) {
            delete _ghostTiers;
            for (uint256 i = 0; i < n; ++i) {
                _ghostTiers.push(table[i]);
            }
        }
    }

    /// @notice Rate change and/or signer rotation; the retired key must stop working at once.
    function updatePartner(uint256 partnerSeed, bool rotate, uint256 rateSeed, uint256 who) external {
        uint32 pid = uint32(_bound(partnerSeed, 1, MAX_PARTNERS + 1));
        GhostPartner storage p = ghostPartner[pid];
        (uint32 rp, uint32 rpm) = _rate(rateSeed);
        if (rateSeed % 9 == 8) rp = 0;
        uint256 key = rotate ? uint256(keccak256(abi.encode("partner", pid, ++_nonce))) % 2 ** 200 + 1 : p.key;
        if (key == 0) key = 0xD00D; // an unknown partner: any signer
        bytes4 expected = p.key == 0
            ? ICoalitionPoints.UnknownPartner.selector
            : (rp == 0 ? ICoalitionPoints.InvalidRate.selector : bytes4(0));
        bytes memory call = abi.encodeCall(ILedger.updatePartner, (pid, vm.addr(key), rp, rpm));
        if (_operatorCall(who, call, expected)) {
            if (rotate) (p.retiredKey, p.key) = (p.key, key);
            (p.ratePoints, p.ratePerMinorUnits) = (rp, rpm);
        }
    }

    function setAllowance(uint256 partnerSeed, uint256 amount, uint256 who) external {
        uint32 pid = uint32(_bound(partnerSeed, 1, MAX_PARTNERS + 1));
        amount = amount % 10 == 0 ? type(uint128).max : _bound(amount, 0, 10 ** 12);
        bytes4 expected = ghostPartner[pid].key == 0 ? ICoalitionPoints.UnknownPartner.selector : bytes4(0);
        if (_operatorCall(who, abi.encodeCall(ILedger.setAllowance, (pid, uint128(amount))), expected)) {
            ghostPartner[pid].allowance = amount;
        }
    }

    function setPartnerActive(uint256 partnerSeed, bool active, uint256 who) external {
        uint32 pid = uint32(_bound(partnerSeed, 1, MAX_PARTNERS + 1));
        bytes4 expected = ghostPartner[pid].key == 0 ? ICoalitionPoints.UnknownPartner.selector : bytes4(0);
        if (_operatorCall(who, abi.encodeCall(ILedger.setPartnerActive, (pid, active)), expected)) {
            ghostPartner[pid].active = active;
        }
    }

    function addPartner(uint256 rateSeed, uint256 allowance, uint256 who) external {
        if (ghostPartnerCount >= MAX_PARTNERS) return;
        (uint32 rp, uint32 rpm) = _rate(rateSeed);
        if (_isStranger(who)) {
            _operatorCall(who, abi.encodeCall(ILedger.addPartner, (stranger, rp, rpm, "EUR", 1)), bytes4(0));
            return;
        }
        _addPartner(rp, rpm, _bound(allowance, 0, 10 ** 7));
    }

    function setTransfersEnabled(bool enabled, uint256 who) external {
        if (_operatorCall(who, abi.encodeCall(ILedger.setTransfersEnabled, (enabled)), bytes4(0))) {
            ghostTransfers = enabled;
        }
    }

    function setPointValue(uint256 value, uint256 who) external {
        value = _bound(value, 0, 10 ** 6);
        if (_operatorCall(who, abi.encodeCall(ILedger.setPointValue, (value, "EUR")), bytes4(0))) {
            ghostPointValue = value;
        }
    }

    /// @notice A real pause one call in three (else a stranger's, refused), so pauses stay short.
    function pause(uint256 who) external {
        if (who % 3 != 0) who = 0; // _isStranger(0) is true
        bytes4 expected = ghostPaused ? ILedger.EnforcedPause.selector : bytes4(0);
        if (_operatorCall(who, abi.encodeCall(ILedger.pause, ()), expected)) ghostPaused = true;
    }

    function unpause(uint256 who) external {
        bytes4 expected = ghostPaused ? bytes4(0) : ILedger.ExpectedPause.selector;
        if (_operatorCall(who, abi.encodeCall(ILedger.unpause, ()), expected)) ghostPaused = false;
    }

    function beginDefaultAdminTransfer(uint256 who) external {
        bytes memory call = abi.encodeCall(ILedger.beginDefaultAdminTransfer, (operators[1 - adminIndex]));
        if (_operatorCall(who, call, bytes4(0))) (hasPending, pendingIndex) = (true, 1 - adminIndex);
    }

    function cancelDefaultAdminTransfer(uint256 who) external {
        if (_operatorCall(who, abi.encodeCall(ILedger.cancelDefaultAdminTransfer, ()), bytes4(0))) hasPending = false;
    }

    /// @notice Accepted only by the pending admin once the delay (3 days) has passed.
    function acceptDefaultAdminTransfer(bool byPending) external {
        uint256 by = byPending && hasPending ? pendingIndex : 1 - adminIndex;
        bytes4 expected = bytes4(0);
        if (!hasPending || by != pendingIndex) {
            expected = ILedger.AccessControlInvalidDefaultAdmin.selector;
        } else {
            (, uint48 schedule) = ledger.pendingDefaultAdmin();
            if (block.timestamp <= schedule) expected = ILedger.AccessControlEnforcedDefaultAdminDelay.selector;
        }
        vm.prank(operators[by]);
        if (expected == bytes4(0)) {
            ledger.acceptDefaultAdminTransfer();
            (adminIndex, hasPending) = (by, false);
        } else {
            try ledger.acceptDefaultAdminTransfer() {
                revert("acceptDefaultAdminTransfer: succeeded where the ghost expected a refusal");
            } catch (bytes memory err) {
                require(bytes4(err) == expected, "acceptDefaultAdminTransfer: refused with another error");
            }
        }
        _count(this.acceptDefaultAdminTransfer.selector, expected == bytes4(0));
    }

    // ================================================================ time

    /// @notice Moves the clock forward by one month mostly, up to six years now and then.
    function warp(uint256 seed) external {
        uint256 kind = seed % 4;
        uint256 months = kind == 0 ? 1 : (kind == 1 ? _bound(seed >> 8, 1, 3) : (kind == 2 ? _bound(seed >> 8, 4, 14) : _bound(seed >> 8, 15, 72)));
        _warpTo(ghostMonth + months);
    }

    // ================================================================ ghost views

    function actorCount() external pure returns (uint256) {
        return ACTORS;
    }

    function ghostBalance(address member) public view returns (uint256 total) {
        uint24[] storage months = _ghostMonths[member];
        for (uint256 i = 0; i < months.length; ++i) {
            if (months[i] >= ghostMonth) total += ghostBucket[member][months[i]];
        }
    }

    /// @notice The member's live buckets, earliest first, as `expiringOf` must list them.
    function ghostSchedule(address member) external view returns (uint24[] memory months, uint256[] memory points) {
        uint24[] storage all = _ghostMonths[member];
        months = new uint24[](all.length);
        points = new uint256[](all.length);
        uint256 n;
        for (uint256 i = 0; i < all.length; ++i) {
            uint256 p = ghostBucket[member][all[i]];
            if (all[i] >= ghostMonth && p != 0) (months[n], points[n++]) = (all[i], p);
        }
        assembly ("memory-safe") {
            mstore(months, n)
            mstore(points, n)
        }
    }

    /// @notice Points that expired (live before, past now), whether or not swept on-chain.
    function ghostExpired() external view returns (uint256 total) {
        for (uint256 a = 0; a < ACTORS; ++a) {
            uint24[] storage months = _ghostMonths[actors[a]];
            for (uint256 i = 0; i < months.length; ++i) {
                if (months[i] < ghostMonth) total += ghostBucket[actors[a]][months[i]];
            }
        }
    }

    function ghostQualifying(address member) public view returns (uint256 total) {
        for (uint256 m = ghostMonth - 11; m <= ghostMonth; ++m) {
            total += ghostEarned[member][m];
        }
    }

    function ghostTierIndex(address member) public view returns (uint256 i) {
        uint256 q = ghostQualifying(member);
        for (uint256 j = 0; j < _ghostTiers.length; ++j) {
            if (q >= _ghostTiers[j].threshold) i = j;
        }
    }

    function ghostTiers() external view returns (ICoalitionPoints.Tier[] memory) {
        return _ghostTiers;
    }

    function admin() external view returns (address) {
        return operators[adminIndex];
    }

    // ================================================================ internals: earns

    function _earn(uint32 pid, address member, uint256 spend, uint256 variant, bool count) internal {
        ICoalitionPoints.EarnOp[] memory ops = new ICoalitionPoints.EarnOp[](1);
        uint256[] memory points = new uint256[](1);
        ops[0] = _earnOp(pid, member, spend, variant);
        points[0] = _ghostEarn(ops[0], variant);
        if (!count) require(points[0] != 0, "seed earn rejected");
        _submitEarns(ops, points);
    }

    function _earnOp(uint32 pid, address member, uint256 spend, uint256 variant)
        internal
        returns (ICoalitionPoints.EarnOp memory op)
    {
        if (variant == 6 && _lastEarn.deadline != 0) return _lastEarn; // replay
        GhostPartner storage p = ghostPartner[pid];
        uint256 key = p.key == 0 ? 0xD00D : p.key;
        if (variant == 5) key = 0xBAD;
        if (variant == 7 && p.retiredKey != 0) key = p.retiredKey;
        op = ICoalitionPoints.EarnOp(pid, member, spend, keccak256(abi.encode("receipt", ++_nonce)), ++_nonce, FAR, 0, 0);
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256(
                    "Earn(uint32 partnerId,address member,uint256 spend,bytes32 receiptRef,uint256 nonce,uint256 deadline)"
                ),
                op.partnerId,
                op.member,
                op.spend,
                op.receiptRef,
                op.nonce,
                op.deadline
            )
        );
        (op.r, op.vs) = _sign(key, structHash);
    }

    /// @dev Applies an earn to the ghost if the rules accept it; returns its points (0: refused).
    function _ghostEarn(ICoalitionPoints.EarnOp memory op, uint256 variant) internal returns (uint256 points) {
        GhostPartner storage p = ghostPartner[op.partnerId];
        bool signed = variant < 5 || (variant == 7 && p.retiredKey == 0) || (variant == 6 && _lastEarn.deadline == 0);
        if (ghostPaused || p.key == 0 || !p.active || op.spend == 0 || op.spend > MAX_SPEND) return 0;
        if (_partnerNonceUsed[op.partnerId][op.nonce] || !signed) return 0;
        uint256 multiplier = _ghostTiers[ghostTierIndex(op.member)].multiplierBps;
        points = op.spend * p.ratePoints * multiplier / (uint256(p.ratePerMinorUnits) * BPS);
        if (points == 0 || points > MAX_OP_POINTS || points > p.allowance) return 0;
        _partnerNonceUsed[op.partnerId][op.nonce] = true;
        _credit(op.member, ghostExpiryMonths == 0 ? NEVER : ghostMonth + ghostExpiryMonths, points);
        ghostEarned[op.member][ghostMonth] += points;
        p.allowance -= points;
        p.issued += points;
    }

    function _submitEarns(ICoalitionPoints.EarnOp[] memory ops, uint256[] memory points) internal {
        uint256 expected = (points[0] != 0 ? 1 : 0) + (points.length > 1 && points[1] != 0 ? 1 : 0);
        if (_paused(abi.encodeCall(ILedger.earnBatch, (ops)))) return;
        uint256 accepted = ledger.earnBatch(ops);
        require(accepted == expected, "earnBatch: accepted count differs from the ghost");
        _count(this.earnBatch.selector, accepted != 0);
        if (accepted == 0) return;
        uint64 batchId = ledger.earnBatchCount();
        bytes32[2] memory leaves;
        uint256 n;
        for (uint256 i = 0; i < ops.length; ++i) {
            if (points[i] == 0) continue;
            leaves[n++] = keccak256(abi.encode(ops[i].partnerId, ops[i].member, ops[i].receiptRef, ops[i].spend, points[i], ghostMonth));
            _earns.push(GhostEarn(ops[i].partnerId, batchId, ops[i].member, ops[i].receiptRef, ops[i].spend, points[i], ghostMonth, 0));
            _lastEarn = ops[i];
        }
        if (n == 2) {
            // A two-leaf batch: each leaf's proof is the other leaf.
            _earns[_earns.length - 2].sibling = leaves[1];
            _earns[_earns.length - 1].sibling = leaves[0];
        }
    }

    // ================================================================ internals: redemptions, reversals

    function _redeemOp(uint256 i, uint32 pid, uint256 points, uint256 key)
        internal
        returns (ICoalitionPoints.RedeemOp memory op)
    {
        op = ICoalitionPoints.RedeemOp(actors[i], pid, points, keccak256(abi.encode("redeem", ++_nonce)), ++_nonce, FAR, 0, 0);
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256(
                    "Redeem(address member,uint32 partnerId,uint256 points,bytes32 receiptRef,uint256 nonce,uint256 deadline)"
                ),
                op.member,
                op.partnerId,
                op.points,
                op.receiptRef,
                op.nonce,
                op.deadline
            )
        );
        (op.r, op.vs) = _sign(key, structHash);
    }

    function _ghostRedeem(ICoalitionPoints.RedeemOp memory op, bool forged) internal returns (bool) {
        GhostPartner storage p = ghostPartner[op.partnerId];
        if (p.key == 0 || !p.active || op.points == 0 || op.points > MAX_OP_POINTS) return false;
        if (_memberNonceUsed[op.member][op.nonce] || forged || ghostBalance(op.member) < op.points) return false;
        if (ghostPaused) return false;
        _memberNonceUsed[op.member][op.nonce] = true;
        _take(op.member, op.points);
        p.redeemed += op.points;
        return true;
    }

    function _reverseOp(GhostEarn memory e, uint32 pid, uint256 points, uint256 key)
        internal
        returns (ICoalitionPoints.ReverseOp memory op)
    {
        bytes32[] memory proof = new bytes32[](e.sibling == 0 ? 0 : 1);
        if (e.sibling != 0) proof[0] = e.sibling;
        op.partnerId = pid;
        op.points = points;
        op.receiptRef = keccak256(abi.encode("refund", ++_nonce));
        op.nonce = ++_nonce;
        op.deadline = FAR;
        op.earn = ICoalitionPoints.EarnRecord(e.batchId, e.member, e.receiptRef, e.spend, e.points, e.earnMonth, proof);
        bytes32 leaf = keccak256(abi.encode(pid, e.member, e.receiptRef, e.spend, e.points, e.earnMonth));
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256(
                    "Reverse(uint32 partnerId,bytes32 earnLeaf,uint256 points,bytes32 receiptRef,uint256 nonce,uint256 deadline)"
                ),
                pid,
                leaf,
                points,
                op.receiptRef,
                op.nonce,
                op.deadline
            )
        );
        (op.r, op.vs) = _sign(key, structHash);
    }

    function _ghostReverse(GhostEarn memory e, ICoalitionPoints.ReverseOp memory op, bool signed)
        internal
        returns (bool)
    {
        GhostPartner storage p = ghostPartner[op.partnerId];
        if (p.key == 0 || !p.active || !signed || op.partnerId != e.partnerId || ghostPaused) return false;
        bytes32 leaf = keccak256(abi.encode(e.partnerId, e.member, e.receiptRef, e.spend, e.points, e.earnMonth));
        uint256 done = ghostReversedOf[leaf];
        if (done + op.points > e.points || ghostBalance(e.member) < op.points) return false;
        ghostReversedOf[leaf] = done + op.points;
        _take(e.member, op.points);
        uint256 earned = ghostEarned[e.member][e.earnMonth];
        ghostEarned[e.member][e.earnMonth] = earned - (op.points < earned ? op.points : earned);
        uint256 restored = p.allowance + op.points;
        p.allowance = restored > type(uint128).max ? type(uint128).max : restored;
        p.reversed += op.points;
        return true;
    }

    // ================================================================ internals: ghost buckets

    function _credit(address member, uint24 expiry, uint256 points) internal {
        uint24[] storage months = _ghostMonths[member];
        uint256 i = months.length;
        while (i > 0 && months[i - 1] > expiry) --i;
        if (i == 0 || months[i - 1] != expiry) {
            months.push(0);
            for (uint256 j = months.length - 1; j > i; --j) {
                months[j] = months[j - 1];
            }
            months[i] = expiry;
        }
        ghostBucket[member][expiry] += points;
    }

    /// @dev Takes `points` live points, earliest expiry first; returns them as (months, points).
    function _take(address member, uint256 points) internal returns (uint24[] memory es, uint256[] memory ps) {
        uint24[] memory months = _ghostMonths[member];
        (es, ps) = (new uint24[](months.length), new uint256[](months.length));
        uint256 n;
        for (uint256 i = 0; i < months.length && points != 0; ++i) {
            uint256 have = ghostBucket[member][months[i]];
            if (months[i] < ghostMonth || have == 0) continue;
            uint256 part = have < points ? have : points;
            ghostBucket[member][months[i]] = have - part;
            (es[n], ps[n++]) = (months[i], part);
            points -= part;
        }
        require(points == 0, "ghost: took more than the balance");
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

    // ================================================================ internals: helpers

    function _addPartner(uint32 rp, uint32 rpm, uint256 allowance) internal {
        uint32 pid = ghostPartnerCount + 1;
        uint256 key = uint256(keccak256(abi.encode("partner", pid))) % 2 ** 200 + 1;
        vm.prank(operators[adminIndex]);
        require(ledger.addPartner(vm.addr(key), rp, rpm, "EUR", uint128(allowance)) == pid, "partner id");
        ghostPartner[pid] = GhostPartner(key, 0, true, rp, rpm, allowance, 0, 0, 0);
        ghostPartnerCount = pid;
        _count(this.addPartner.selector, true);
    }

    /// @dev An operator function from the admin, or (refused) from a stranger one call in five.
    /// Returns whether the call was applied.
    function _operatorCall(uint256 who, bytes memory call, bytes4 expected) internal returns (bool) {
        bytes4 selector = bytes4(call);
        if (_isStranger(who)) expected = ILedger.AccessControlUnauthorizedAccount.selector;
        vm.prank(_isStranger(who) ? stranger : operators[adminIndex]);
        (bool ok, bytes memory err) = address(ledger).call(call);
        if (expected == bytes4(0)) {
            if (!ok) {
                assembly ("memory-safe") {
                    revert(add(err, 0x20), mload(err)) // the ledger's own error, for the log
                }
            }
        } else {
            require(!ok, "operator call succeeded where the ghost expected a refusal");
            require(bytes4(err) == expected, "operator call refused with another error");
        }
        _count(selector, ok);
        return ok;
    }

    function _isStranger(uint256 who) internal pure returns (bool) {
        return who % 5 == 0;
    }

    function _transferError(address from, uint256 amount) internal view returns (bytes4) {
        if (ghostPaused) return ILedger.EnforcedPause.selector;
        if (!ghostTransfers) return ICoalitionPoints.TransfersDisabled.selector;
        if (ghostBalance(from) < amount) return ILedger.ERC20InsufficientBalance.selector;
        return bytes4(0);
    }

    /// @dev While paused, a batch (or the sweep) must revert whole with EnforcedPause: sends
    /// `call` then and returns true.
    function _paused(bytes memory call) internal returns (bool) {
        if (!ghostPaused) return false;
        (bool ok, bytes memory err) = address(ledger).call(call);
        require(!ok, "a batch ran while paused");
        require(bytes4(err) == ILedger.EnforcedPause.selector, "paused batch: another error");
        return true;
    }

    /// @dev An EIP-712 signature in EIP-2098 compact form (r, vs), as the ledger takes it.
    function _sign(uint256 key, bytes32 structHash) internal view returns (bytes32 r, bytes32 vs) {
        (uint8 v, bytes32 r_, bytes32 s) =
            vm.sign(key, keccak256(abi.encodePacked("\x19\x01", _domainSeparator, structHash)));
        (r, vs) = (r_, bytes32(uint256(s) | (uint256(v - 27) << 255)));
    }

    function _warpTo(uint256 month) internal {
        // Day 15, noon: far from both ends of the month.
        vm.warp(_daysFromCivil(month / 12, month % 12 + 1, 15) * 86_400 + 12 hours);
        ghostMonth = uint24(month);
        require(ledger.currentMonth() == ghostMonth, "warp: the ledger's month differs");
    }

    /// @dev Howard Hinnant's days_from_civil (an independent check of the ledger's monthOf).
    function _daysFromCivil(uint256 y, uint256 m, uint256 d) internal pure returns (uint256) {
        if (m <= 2) y -= 1;
        uint256 era = y / 400;
        uint256 yoe = y - era * 400;
        uint256 doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
        uint256 doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146_097 + doe - 719_468;
    }

    function _actor(uint256 seed) internal view returns (address) {
        return actors[seed % ACTORS];
    }

    function _spend(uint256 seed) internal pure returns (uint256) {
        if (seed % 20 == 0) return 0;
        if (seed % 20 == 1) return MAX_SPEND + 1;
        return _bound(seed, 1, 300_000);
    }

    function _rate(uint256 seed) internal pure returns (uint32, uint32) {
        uint32[2][6] memory table = [[uint32(1), 100], [uint32(3), 200], [uint32(5), 1], [uint32(1), 1], [uint32(7), 3], [uint32(2), 1000]];
        uint32[2] memory r = table[seed % 6];
        return (r[0], r[1]);
    }

    function _bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        return lo + x % (hi - lo + 1);
    }

    function _count(bytes4 selector, bool ok) internal {
        if (ok) ++applied[selector];
        else ++refused[selector];
    }
}
