"""Partner-side SDK: EIP-712 signing of earns and reversals, receipts, and the gateway client."""
