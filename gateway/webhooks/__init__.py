"""Signed webhooks (SPEC section 6, r2): subscriptions, a durable outbox of events, delivery."""
