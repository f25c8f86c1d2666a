"""HTTP API: FastAPI app, request schemas. Nothing imports this package."""
