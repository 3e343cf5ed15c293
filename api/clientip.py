"""The client's address: the peer's, or, when the peer is a trusted proxy, the rightmost
address of X-Forwarded-For that is not a trusted proxy (never the leftmost, which the client
wrote itself)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from engine.errors import ConfigError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: Iterable[str], *, key: str = "api.trusted_proxies") -> list[Network]:
    out = []
    for cidr in cidrs:
        try:
            out.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise ConfigError(key, f"{cidr!r} is not an address or CIDR") from None
    return out


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class ClientAddress:
    def __init__(self, trusted: list[Network]) -> None:
        self.trusted = trusted

    def is_trusted(self, addr: Address) -> bool:
        return any(addr in net for net in self.trusted)

    def resolve(self, peer: str | None, forwarded_for: list[str]) -> Address | None:
        """The client of a request from `peer` carrying these X-Forwarded-For headers."""
        addr = _address(peer) if peer else None
        if addr is None or not self.trusted or not self.is_trusted(addr):
            return addr
        hops = [h for header in forwarded_for for h in header.split(",")]
        for hop in reversed(hops):
            hop_addr = _address(hop)
            if hop_addr is None:
                return addr  # garbage in the chain: stop at what we know
            if not self.is_trusted(hop_addr):
                return hop_addr
            addr = hop_addr
        return addr
