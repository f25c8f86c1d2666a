"""The batch submitter: leadership, batches, broadcast, receipts and reorgs."""
