"""The CoalitionPoints contract as Python types: its ABI (`abi.py`), its custom errors decoded
(`errors.py`), what its batches carry and return (`operations.py`) and its reads
(`reader.py`). The facade `gateway.chain.ledger.Ledger` adds deployment and the writes."""
