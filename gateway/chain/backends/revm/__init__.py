"""The fast embedded chain: revm (through pyrevm) in this process, answering JSON-RPC itself.

Layers, each usable alone: `tx.py` decodes signed transactions; `engine.py` runs them on
pyrevm with exact gas; `state.py` is the node's chain (blocks, mining, history, calls, kept
in `store.py`'s SQLite); `node.py` answers JSON-RPC over it as a development node would, so
the ledger client takes its lean JSON-RPC path instead of web3's eth-tester formatting;
`chain.py` is the port (`RevmChain`) and the web3 provider.

Nothing is imported here: the store is read (is a chain file py-evm's?) where pyrevm is absent.
"""
