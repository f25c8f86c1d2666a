"""A TCP proxy that breaks HTTP exchanges on purpose, between the SDK and a real gateway.

It forwards bytes both ways and, for requests whose first line starts with a chosen prefix,
can either swallow the gateway's answer and cut the connection (the gateway did the work,
the client never hears of it) or answer in the gateway's place without forwarding (as a
load balancer in trouble would).
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Seen:
    """One matching request as it crossed the proxy."""

    head: bytes  # request line and headers
    body: bytes
    at: float  # time.monotonic() when it arrived

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower().encode():
                return value.strip().decode()
        return None


@dataclass
class _Fault:
    prefix: bytes
    count: int
    refusal: bytes | None = None  # None: forward, then drop the answer


def _read_message(sock: socket.socket, buffer: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(head, body, rest) of one HTTP/1.1 message with a Content-Length body, read from `buffer`
    then `sock`; None if the peer closed first."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    head, _, buffer = buffer.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(buffer) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    return head + b"\r\n\r\n", buffer[:length], buffer[length:]


@dataclass
class FaultyProxy:
    upstream_port: int
    seen: list[Seen] = field(default_factory=list)
    swallowed: list[bytes] = field(default_factory=list)  # answers the client never got
    _faults: list[_Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def drop_answers(self, prefix: str, count: int = 1) -> None:
        """Forward the next `count` matching requests, then cut the connection before the answer."""
        with self._lock:
            self._faults.append(_Fault(prefix.encode(), count))

    def refuse(self, prefix: str, status: str, headers: dict[str, str], count: int = 1) -> None:
        """Answer the next `count` matching requests with `status` without forwarding them."""
        head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        response = (head + "Content-Length: 0\r\nConnection: close\r\n\r\n").encode()
        with self._lock:
            self._faults.append(_Fault(prefix.encode(), count, response))

    def close(self) -> None:
        self._closed = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self._listener.close()

    def _fault_for(self, head: bytes) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if head.startswith(fault.prefix) and fault.count > 0:
                    fault.count -= 1
                    return fault
        return None

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), name="proxy-conn", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        """One client connection, one request at a time (HTTP/1.1 without pipelining, as httpx)."""
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        pending = b""
        answer_buffer = b""
        try:
            while True:
                request = _read_message(client, pending)
                if request is None:
                    return
                head, body, pending = request
                matched = any(head.startswith(f.prefix) for f in self._faults)
                if matched:
                    self.seen.append(Seen(head, body, time.monotonic()))
                fault = self._fault_for(head) if matched else None
                if fault is not None and fault.refusal is not None:
                    client.sendall(fault.refusal)
                    return
                upstream.sendall(head + body)
                answer = _read_message(upstream, answer_buffer)
                if answer is None:
                    return
                answer_head, answer_body, answer_buffer = answer
                if fault is not None:  # the gateway has answered: the work is done, and lost to the client
                    self.swallowed.append(answer_body)
                    return
                client.sendall(answer_head + answer_body)
        except OSError:
            return
        finally:
            for sock in (client, upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
