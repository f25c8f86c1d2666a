"""Partner-side SDK: the gateway client, EIP-712 signing of earns and reversals, receipts.

`partners.client` (PartnerClient, AsyncPartnerClient), `partners.errors` (typed refusals),
`partners.models` (typed results), `partners.redemption` (a self-custody member's signed
redemption), `partners.signing` (EIP-712 messages and canonical receipts). This package never
imports the gateway's code: it ships to partners on its own.
"""
