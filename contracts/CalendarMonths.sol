// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title CalendarMonths
/// @notice UTC calendar-month index of a timestamp: `year * 12 + (month - 1)`.
/// @dev Howard Hinnant's `civil_from_days`, restricted to non-negative day numbers, which
/// every block timestamp is. Expiry and tiers are defined on calendar months, so the
/// ledger needs the month, not a 30-day approximation.
library CalendarMonths {
    /// @notice Month index of `timestamp` (seconds since the Unix epoch, UTC).
    function monthOf(uint256 timestamp) internal pure returns (uint24) {
        // unchecked: every intermediate is bounded by `timestamp / 86400 + 719468` and the
        // subtractions follow the algorithm's proven ranges (doe < 146097, yoe < 400).
        unchecked {
            uint256 z = timestamp / 86400 + 719468;
            uint256 era = z / 146097;
            uint256 doe = z - era * 146097;
            uint256 yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
            uint256 doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            uint256 mp = (5 * doy + 2) / 153;
            uint256 month = mp < 10 ? mp + 3 : mp - 9;
            uint256 year = yoe + era * 400 + (month <= 2 ? 1 : 0);
            // Fits in 24 bits until the year 1,398,101; a chain's clock is not that far.
            return uint24(year * 12 + month - 1);
        }
    }
}
