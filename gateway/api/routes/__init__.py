"""The v1 API routes, one module per area."""
