"""Accepting operations (earn, redemption, reversal): signatures, the outbox store, queries."""
