"""revm (through pyrevm) running one transaction or call at a time, with exact gas.

pyrevm keeps whatever a call touched warm for the next call (wrong gas, growing memory), so
every transaction runs inside a journal checkpoint: its writes are read back (the journal
lists the slots it wrote, `storage()` gives their values), the checkpoint is reverted, and
the writes are put into pyrevm's database, which nothing keeps warm.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from eth_utils import keccak
from pyrevm import EVM, AccountInfo, BlockEnv, CfgEnv, Env, TxEnv

from gateway.chain.backends.base import EMBEDDED_GAS_LIMIT
from gateway.chain.backends.revm.tx import _addr
from gateway.chain.jsonrpc import data_bytes, to_data

SPEC = "CANCUN"
COINBASE = b"\x00" * 20
EMPTY_CODE_HASH = keccak(b"")


# ------------------------------------------------------------------ the engine


@dataclass
class Outcome:
    """What one transaction or call did."""

    success: bool
    output: bytes
    gas_used: int
    gas_refunded: int = 0
    created: bytes | None = None
    logs: list[tuple[bytes, list[bytes], bytes]] = field(default_factory=list)
    storage: dict[tuple[bytes, bytes], tuple[bytes, bytes]] = field(default_factory=dict)  # new, old
    # balance, nonce, code hash (None: no code) and pyrevm's account (to read new code from)
    accounts: dict[bytes, tuple[int, int, bytes | None, Any]] = field(default_factory=dict)


class InvalidTransaction(Exception):
    """revm refused the transaction before running it (intrinsic gas, limits)."""


_STORAGE_WRITE = re.compile(r"StorageChange \{ address: 0x([0-9a-f]{40}), key: (\d+), had_value: Some\((\d+)\)")
_FAILURE = re.compile(r"^(Revert|Halt) \{ (?:reason: (\w+)[^,]*, )?gas_used: (\d+)(?:, output: 0x([0-9a-f]*))? \}$")


class RevmEngine:
    """pyrevm with exact gas (see the module docstring). Not thread-safe: the node locks."""

    def __init__(self, *, chain_id: int, gas_limit: int) -> None:
        self.chain_id = chain_id
        self.evm = EVM(env=Env(cfg=CfgEnv(chain_id=chain_id)), gas_limit=gas_limit, spec_id=SPEC)
        self._access_list_set = False

    def put_account(self, address: bytes, balance: int, nonce: int, code: bytes | None) -> None:
        # pyrevm 0.3.7's stub omits `balance`, which its AccountInfo takes.
        info = AccountInfo(balance=balance, nonce=nonce, code=code or None)  # type: ignore[call-arg]
        self.evm.insert_account_info(to_data(address), info)

    def put_slot(self, address: bytes, slot: bytes, value: bytes) -> None:
        # pyrevm writes a slot to its database only while the account is not in the journal
        # (else it journals the write, warm); the checkpoint takes the account back out.
        checkpoint = self.evm.snapshot()
        self.evm.insert_account_storage(to_data(address), int.from_bytes(slot, "big"), int.from_bytes(value, "big"))
        self.evm.revert(checkpoint)

    def run(
        self,
        *,
        caller: bytes,
        to: bytes | None,
        data: bytes,
        value: int,
        gas: int,
        number: int,
        timestamp: int,
        access_list: list[tuple[bytes, list[bytes]]] | None = None,
        keep: bool,
    ) -> Outcome:
        """Runs one transaction; with `keep`, returns its writes (nothing is applied here)."""
        evm = self.evm
        evm.set_block_env(
            BlockEnv(
                number=number,
                coinbase=to_data(COINBASE),
                timestamp=timestamp,
                prevrandao=keccak(number.to_bytes(32, "big")),
                gas_limit=EMBEDDED_GAS_LIMIT,
            )
        )
        if access_list or self._access_list_set:
            evm.set_tx_env(
                TxEnv(access_list=[(to_data(a), [int.from_bytes(k, "big") for k in ks]) for a, ks in access_list or []])
            )
            self._access_list_set = bool(access_list)
        checkpoint = evm.snapshot()
        try:
            created: bytes | None = None
            try:
                if to is None:
                    created = data_bytes(evm.deploy(to_data(caller), data, value=value, gas=gas))
                    output = b""
                else:
                    output = bytes(evm.message_call(to_data(caller), to_data(to), data, value=value, gas=gas))
                success = True
            except RuntimeError as exc:
                result = evm.result
                match = _FAILURE.match(str(exc))
                if result is None or match is None:
                    raise InvalidTransaction(str(exc)) from exc
                success, output = False, bytes.fromhex(match.group(4) or "")
            result = evm.result
            assert result is not None  # set by every transaction revm ran
            out = Outcome(success, output, int(result.gas_used), int(result.gas_refunded or 0), created)
            if success:
                out.logs = [(data_bytes(log.address), list(log.data[0]), bytes(log.data[1])) for log in result.logs]
            if keep:
                self._read_writes(out)
            return out
        finally:
            evm.revert(checkpoint)
            evm.reset_transient_storage()

    def _read_writes(self, out: Outcome) -> None:
        journal = self.evm.journal_str
        journal = journal[journal.rindex(", journal: [") :]
        for match in _STORAGE_WRITE.finditer(journal):
            key = (bytes.fromhex(match.group(1)), int(match.group(2)).to_bytes(32, "big"))
            if key not in out.storage:  # the first write's previous value is the original
                out.storage[key] = (b"", int(match.group(3)).to_bytes(32, "big"))
        for (address, slot), (_, old) in list(out.storage.items()):
            new = int(self.evm.storage(to_data(address), int.from_bytes(slot, "big"))).to_bytes(32, "big")
            if new == old:
                del out.storage[(address, slot)]
            else:
                out.storage[(address, slot)] = (new, old)
        for name, info in self.evm.journal_state.items():
            code_hash = bytes(info.code_hash) if info.code_hash else None
            out.accounts[_addr(name)] = (
                int(info.balance),
                int(info.nonce),
                None if code_hash in (None, EMPTY_CODE_HASH) else code_hash,
                info,
            )
