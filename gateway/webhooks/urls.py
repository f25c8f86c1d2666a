"""Which webhook URLs the gateway will call: no loopback, private or otherwise non-public
address outside development, checked when the URL is registered and again at every delivery
(the name is resolved once per delivery and the connection goes to the address checked, so a
DNS answer cannot move a delivery onto the gateway's own network between check and send)."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from gateway.core.errors import ErrorCode, Invalid

MAX_URL_LENGTH = 2048
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrl(Invalid):
    """A webhook URL the gateway will not call."""

    code = ErrorCode.INVALID_WEBHOOK_URL


@dataclass(frozen=True)
class Target:
    """Where one delivery goes: the URL as registered, and the address checked for it."""

    url: str
    host: str
    address: str
    port: int
    scheme: str

    @property
    def pinned_url(self) -> str:
        """The URL with the checked address in place of the name (Host header and TLS name
        stay the registered host)."""
        parts = urlsplit(self.url)
        host = f"[{self.address}]" if ":" in self.address else self.address
        return SplitResult(parts.scheme, f"{host}:{self.port}", parts.path or "/", parts.query, "").geturl()

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"


def _public(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _parse(url: str, *, production: bool) -> tuple[SplitResult, str, int]:
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"a webhook URL is an http(s) URL of at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise UnsafeUrl("a webhook URL may not contain spaces or control characters")
    parts = urlsplit(url)
    allowed = ("https",) if production else ("http", "https")
    if parts.scheme not in allowed:
        raise UnsafeUrl(f"webhook URLs must use {' or '.join(allowed)}", url=url)
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("a webhook URL may not carry credentials; the signature authenticates the gateway")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeUrl(f"bad port in webhook URL: {exc}") from None
    if not parts.hostname:
        raise UnsafeUrl("a webhook URL needs a host")
    return parts, parts.hostname, port


def resolve(url: str, *, production: bool) -> Target:
    """Checks `url` and picks the address to send to; raises UnsafeUrl when it may not be used.

    In production every address the name resolves to must be public (one private answer is
    enough to refuse: a resolver may rotate them); in development anything goes, so tests and
    a partner's laptop can receive on 127.0.0.1."""
    parts, host, port = _parse(url, production=production)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeUrl(f"cannot resolve the webhook host {host!r}: {exc}", url=url) from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise UnsafeUrl(f"the webhook host {host!r} has no address", url=url)
    if production:
        bad = [str(ip) for ip in addresses if not _public(ip)]
        if bad:
            raise UnsafeUrl(
                f"webhook URL resolves to a non-public address ({', '.join(sorted(set(bad)))}): "
                "refused outside development",
                url=url,
            )
    return Target(url, host, str(addresses[0]), port, parts.scheme)
