"""The composition root: the runtime container and how it is opened (bootstrap, deployment record)."""
