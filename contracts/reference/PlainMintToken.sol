// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title PlainMintToken
/// @notice Baseline for the gas benchmark only: a stock OpenZeppelin ERC-20 with an
/// unrestricted batched mint, no signatures, no expiry, no tiers. Never deployed for real.
contract PlainMintToken is ERC20 {
    constructor() ERC20("Plain", "PLN") {}

    /// @notice Mints `amounts[i]` to `to[i]` for every i.
    function mintBatch(address[] calldata to, uint256[] calldata amounts) external {
        for (uint256 i = 0; i < to.length; ++i) {
            _mint(to[i], amounts[i]);
        }
    }
}
