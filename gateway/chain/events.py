"""Reading the ledger's history: paged eth_getLogs, decoded events, block headers in batches.

What the audit, the settlement statement and the reindex read from the chain; nothing here
knows what the events mean.
"""

from __future__ import annotations

import gc
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3

from gateway.chain.backends import chain_of
from gateway.chain.jsonrpc import quantity as _int
from gateway.chain.ledger import Ledger, LedgerEvent, _abi_tables, rpc, rpc_many
from gateway.core.errors import ChainError

PAGE_BLOCKS = 2_000  # pages of get_logs, and of the events of eth-tester
FIRST_PAGE_BLOCKS = 100  # a node's first page; later ones are sized to about TARGET_LOGS logs
MAX_PAGE_BLOCKS = 10_000  # what public nodes commonly accept in one eth_getLogs
MAX_PAGE_GROWTH = 4  # a quiet stretch must not make the next page swallow a busy one whole
TARGET_LOGS = 20_000
HEADER_BATCH = 500
ADDRESS_CACHE_ENTRIES = 100_000  # checksummed addresses an EventDecoder keeps (~25 MiB when full)


def get_logs(
    w3: Web3,
    address: str,
    from_block: int,
    to_block: int,
    *,
    topics: list[str | None] | None = None,
    page: int = PAGE_BLOCKS,
) -> list[Any]:
    """Raw logs of `address` in [from_block, to_block], in pages of `page` blocks."""
    logs: list[Any] = []
    start = from_block
    while start <= to_block:
        end = min(start + page - 1, to_block)
        query: dict[str, Any] = {"address": address, "fromBlock": hex(start), "toBlock": hex(end)}
        if topics is not None:
            query["topics"] = topics
        logs += rpc(w3, "eth_getLogs", [query])
        start = end + 1
    return logs


_pause = {"depth": 0, "was_enabled": True}
_pause_lock = threading.Lock()


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pauses Python's cyclic garbage collector while millions of events are built and
    replayed: they all live until the audit ends, and each full collection would walk all
    of them again for nothing (events make no reference cycles). Measured on a
    1,000,000-operation ledger: reading its events 34.6 s -> 24.6 s. Reentrant; the
    collector comes back when the outermost pause ends."""
    with _pause_lock:
        if _pause["depth"] == 0:
            _pause["was_enabled"] = gc.isenabled()
            gc.disable()
        _pause["depth"] += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pause["depth"] -= 1
            if _pause["depth"] == 0 and _pause["was_enabled"]:
                gc.enable()


Converter = Callable[[str], Any]
_new_event = object.__new__


class EventDecoder:
    """Decodes the ledger's logs exactly as `Ledger.decode_log` does, several times faster
    for what a node returns as JSON: static ABI words (uintN, intN, address, bool, bytesN)
    are read straight from the hex by a converter made once per field, with their padding
    checked, and each address is checksummed once. Events with dynamic fields, and logs
    already formatted by web3 (eth-tester's), go through `Ledger.decode_log`."""

    def __init__(self, ledger: Ledger, *, max_addresses: int = ADDRESS_CACHE_ENTRIES) -> None:
        self.ledger = ledger
        self.address = ledger.address.lower()
        # 64-hex word -> checksummed address. The submitter's decoder lives as long as the
        # gateway and sees every member: emptied when full, so it does not grow with the
        # coalition (an audit's members beyond the bound are checksummed again, ~10 us each).
        self._addresses: dict[str, str] = {}
        self._max_addresses = max_addresses
        # topic -> (name, [(arg, converter)] of the indexed fields, of the data words); None: dynamic
        self.specs: dict[str, tuple[str, list[tuple[str, Converter]], list[tuple[str, Converter]]] | None] = {}
        self.topics: dict[str, str] = {}
        for topic, (name, indexed, plain) in _abi_tables()[1].items():
            key = "0x" + topic.hex()
            self.topics[name] = key
            if all(_static(t) for _, t in (*indexed, *plain)):
                self.specs[key] = (
                    name,
                    [(arg, self._converter(t)) for arg, t in indexed],
                    [(arg, self._converter(t)) for arg, t in plain],
                )
            else:
                self.specs[key] = None
        self.names = {key: name for name, key in self.topics.items()}
        # topic -> a function made for that event, decoding its words inline (see _compiled)
        self.fast: dict[str, Callable[[list[str], str], dict[str, Any]]] = {}
        for topic, (_, indexed, plain) in _abi_tables()[1].items():
            if self.specs["0x" + topic.hex()] is not None:
                self.fast["0x" + topic.hex()] = self._compiled(indexed, plain)

    def decode(self, log: Any, names: frozenset[str] | None = None) -> LedgerEvent | None:
        """The ledger's event in `log` (only those named in `names`, if given), else None."""
        topics = log["topics"]
        data = log["data"]
        if not (
            topics and isinstance(data, str) and isinstance(topics[0], str) and isinstance(log["blockNumber"], str)
        ):
            return self.ledger.decode_log(log, names)  # web3-formatted (eth-tester): the general path
        if log["address"].lower() != self.address:
            return None
        topic = topics[0].lower()
        if names is not None and self.names.get(topic) not in names:
            return None  # not asked for: not decoded at all
        spec = self.specs.get(topic)
        if spec is None:
            return self.ledger.decode_log(log) if topic in self.specs else None
        name, indexed, plain = spec
        if len(topics) != len(indexed) + 1 or len(data) != 2 + 64 * len(plain):
            return self.ledger.decode_log(log)
        try:
            args = self.fast[topic](topics, data)
        except ValueError:
            return self.ledger.decode_log(log)  # not canonical: let eth-abi say what is wrong
        # A frozen dataclass sets each field through object.__setattr__ (2.5 us an event on this
        # machine, a million times in an audit); its fields are its instance dict.
        event = _new_event(LedgerEvent)
        event.__dict__.update(
            name=name,
            args=args,
            block_number=int(log["blockNumber"], 16),
            tx_hash=log["transactionHash"].lower(),
            log_index=int(log["logIndex"], 16),
        )
        return event

    def _compiled(
        self, indexed: list[tuple[str, str]], plain: list[tuple[str, str]]
    ) -> Callable[[list[str], str], dict[str, Any]]:
        """A function decoding one event's words: the loop over fields and a call per field
        unrolled into straight-line code (reading a million-operation ledger: a third of the
        decoding time), uintN and bytes32 inline, addresses through the cache, the rest through
        their converter. Same checks as the converters: a non-canonical word raises ValueError."""
        lines = ["def decode(topics, data):"]
        scope: dict[str, Any] = {"cached": self._addresses.get}
        # int(w, 16) takes the topics' 0x as they come; the other converters want the bare word
        words = [
            (arg, typ, f"topics[{i + 1}]" if typ.startswith("uint") else f"topics[{i + 1}][2:]")
            for i, (arg, typ) in enumerate(indexed)
        ]
        words += [(arg, typ, f"data[{2 + 64 * i}:{66 + 64 * i}]") for i, (arg, typ) in enumerate(plain)]
        values = []
        for n, (arg, typ, word) in enumerate(words):
            v, convert = f"v{n}", self._converter(typ)
            lines.append(f"    w = {word}")
            if typ.startswith("uint"):
                lines += [f"    {v} = int(w, 16)", f"    if {v} >> {int(typ[4:])}:", "        raise ValueError(w)"]
            elif typ == "bytes32":
                lines.append(f"    {v} = bytes.fromhex(w)")
            elif typ == "address":
                scope[f"c{n}"] = convert
                lines += [f"    {v} = cached(w)", f"    if {v} is None:", f"        {v} = c{n}(w)"]
            else:
                scope[f"c{n}"] = convert
                lines.append(f"    {v} = c{n}(w)")
            values.append(f"{arg!r}: {v}")
        lines.append(f"    return {{{', '.join(values)}}}")
        exec("\n".join(lines), scope)  # noqa: S102 - source made above from the ledger's own ABI
        decode: Callable[[list[str], str], dict[str, Any]] = scope["decode"]
        return decode

    def _converter(self, typ: str) -> Converter:
        if typ == "address":
            cache = self._addresses

            def address(word: str) -> str:
                found = cache.get(word)
                if found is None:
                    if word[:24].strip("0"):
                        raise ValueError(word)
                    if len(cache) >= self._max_addresses:
                        cache.clear()
                    found = cache[word] = to_checksum_address("0x" + word[24:])
                return found

            return address
        if typ == "bool":

            def boolean(word: str) -> bool:
                value = int(word, 16)
                if value > 1:
                    raise ValueError(word)
                return value == 1

            return boolean
        if typ.startswith("bytes"):
            size = 2 * int(typ[5:])

            def fixed_bytes(word: str) -> bytes:
                if size < 64 and word[size:].strip("0"):
                    raise ValueError(word)
                return bytes.fromhex(word[:size])

            return fixed_bytes
        if typ.startswith("uint"):
            bits = int(typ[4:])

            def unsigned(word: str) -> int:
                value = int(word, 16)
                if value >> bits:
                    raise ValueError(word)
                return value

            return unsigned
        low, high = -(1 << (int(typ[3:]) - 1)), 1 << (int(typ[3:]) - 1)

        def signed(word: str) -> int:
            value = int(word, 16)
            value = value - (1 << 256) if value >> 255 else value  # two's complement, 256 bits
            if not low <= value < high:
                raise ValueError(word)
            return value

        return signed


def _static(typ: str) -> bool:
    if typ in ("address", "bool"):
        return True
    for prefix in ("uint", "int", "bytes"):
        if typ.startswith(prefix) and typ[len(prefix) :].isdigit():
            return True
    return False


def _pages(
    w3: Web3,
    address: str,
    from_block: int,
    to_block: int,
    topics: list[Any] | None,
    progress: Callable[[int, int], None] | None,
) -> Iterator[list[Any]]:
    """Raw logs page by page. On a node, the next page is requested while the caller decodes
    this one, and pages shrink or grow to about TARGET_LOGS logs each."""
    total = to_block - from_block + 1
    if not chain_of(w3).read_ahead or total <= 0:
        start = from_block
        while start <= to_block:
            end = min(start + PAGE_BLOCKS - 1, to_block)
            yield get_logs(w3, address, start, end, topics=topics)
            if progress:
                progress(end - from_block + 1, total)
            start = end + 1
        return

    pages: queue.Queue[tuple[int, list[Any]] | BaseException | None] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def fetch() -> None:
        start, size = from_block, FIRST_PAGE_BLOCKS
        try:
            while start <= to_block and not stop.is_set():
                end = min(start + size - 1, to_block)
                query: dict[str, Any] = {"address": address, "fromBlock": hex(start), "toBlock": hex(end)}
                if topics is not None:
                    query["topics"] = topics
                logs = rpc(w3, "eth_getLogs", [query])
                pages.put((end, logs))
                start = end + 1
                fitted = size * TARGET_LOGS // max(len(logs), 1)
                size = max(1, min(MAX_PAGE_BLOCKS, MAX_PAGE_GROWTH * size, fitted))
            pages.put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread, which raises it
            pages.put(exc)

    thread = threading.Thread(target=fetch, name="get-logs", daemon=True)
    thread.start()
    try:
        while (item := pages.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            end, logs = item
            yield logs
            if progress:
                progress(end - from_block + 1, total)
    finally:
        stop.set()
        while thread.is_alive():  # unblock a fetcher waiting on a full queue
            try:
                pages.get(timeout=0.1)
            except queue.Empty:
                pass


def fetch_events(
    w3: Web3, ledger: Ledger, from_block: int, to_block: int, progress: Callable[[int, int], None] | None = None
) -> list[LedgerEvent]:
    """Every event of the ledger in [from_block, to_block], decoded, in chain order, except
    the ERC-20 `Transfer`s of mints and burns: they repeat what `Earned`, `Redeemed`,
    `Reversed` and `Expired` say. `Transfer`s are read only where transfers between members
    were switched on (from each `TransfersSwitched(true)` to the next `(false)`)."""
    decoder = EventDecoder(ledger)
    transfer = decoder.topics["Transfer"]
    others = [topic for name, topic in decoder.topics.items() if name != "Transfer"]
    events: list[LedgerEvent] = []
    with collector_paused():
        for logs in _pages(w3, ledger.address, from_block, to_block, [others], progress):
            events += [e for log in logs if (e := decoder.decode(log)) is not None]
        for start, end in _transfer_windows(events, to_block):
            logs = get_logs(w3, ledger.address, start, end, topics=[transfer])
            events += [e for log in logs if (e := decoder.decode(log)) is not None]
        events.sort(key=lambda e: (e.block_number, e.log_index))
    return events


def _transfer_windows(events: list[LedgerEvent], to_block: int) -> list[tuple[int, int]]:
    windows: list[tuple[int, int]] = []
    opened: int | None = None
    for e in events:
        if e.name != "TransfersSwitched":
            continue
        if e.args["enabled"] and opened is None:
            opened = e.block_number
        elif not e.args["enabled"] and opened is not None:
            windows.append((opened, e.block_number))
            opened = None
    if opened is not None:
        windows.append((opened, to_block))
    return windows


def block_headers(w3: Web3, numbers: Iterable[int]) -> dict[int, tuple[int, str]]:
    """(timestamp, hash) of each block number; in JSON-RPC batches on a node."""
    wanted = sorted(set(numbers))
    out: dict[int, tuple[int, str]] = {}
    for i in range(0, len(wanted), HEADER_BATCH):
        chunk = wanted[i : i + HEADER_BATCH]
        blocks = rpc_many(w3, [("eth_getBlockByNumber", [hex(n), False]) for n in chunk])
        for number, block in zip(chunk, blocks, strict=True):
            if not block:
                raise ChainError(f"eth_getBlockByNumber failed: no block {number}")
            out[_int(block["number"])] = (_int(block["timestamp"]), HexBytes(block["hash"]).to_0x_hex())
    return out


def timestamps(w3: Web3, numbers: Iterable[int]) -> dict[int, int]:
    return {n: ts for n, (ts, _) in block_headers(w3, numbers).items()}
