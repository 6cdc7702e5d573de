"""Which network addresses the server may fetch from: the SSRF rule shared by harvest and web.

Manifests, collections, ``info.json`` files, redirects and query-image URLs all name hosts chosen
by someone else. Without a rule, ``http://169.254.169.254/`` (cloud metadata),
``http://localhost:5432/`` or ``http://[::ffff:10.0.0.1]/`` would make this server a proxy into
its own network. The rule is applied to the *resolved* addresses of a host, just before
connecting, and to every hop of a redirect chain (see :mod:`harvest.ssrf`), so that a public name
resolving to a private address, a decimal-encoded IP (``http://2130706433/``) or an IPv4-mapped
IPv6 literal are refused like the plain address.

Defaults are safe: only globally routable unicast addresses are allowed. Two settings open it:

- ``MSEARCH_ALLOW_PRIVATE_NETWORKS=1`` also allows loopback and private networks (RFC 1918,
  IPv6 ULA, carrier-grade NAT), for an intranet installation. Link-local (cloud metadata),
  multicast, unspecified and reserved addresses stay refused.
- ``MSEARCH_ALLOW_HOSTS`` is a comma-separated allow-list of host names (``iiif.intranet``),
  addresses (``127.0.0.1``) and networks (``10.1.0.0/16``) that may be reached whatever their
  address; this is how the test suite reaches its servers on 127.0.0.1.

Standard library only: the core, the harvester and the web app all import it.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Mapping, Optional, Union
from urllib.parse import urlsplit

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}
# IPv6 prefixes that carry an IPv4 address (NAT64 well-known prefix); 6to4 and Teredo are
# unwrapped by the ipaddress module itself.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: private in practice


class AddressRefusedError(ValueError):
    """A host resolves to an address the network policy refuses; the message says which and why.

    A ValueError, not an OSError, on purpose: HTTP clients retry OSErrors, and a refusal must not
    be retried."""

    def __init__(self, host: str, address: str, reason: str):
        shown = host if host == address else f"{host} ({address})"
        super().__init__(f"{shown} is {reason}; fetching from it is refused "
                         "(see MSEARCH_ALLOW_HOSTS / MSEARCH_ALLOW_PRIVATE_NETWORKS)")
        self.host = host
        self.address = address
        self.reason = reason


@dataclass(frozen=True)
class NetworkPolicy:
    """What may be fetched. The default instance allows public addresses only.

    Raises ValueError (from :meth:`parse`) for an allow-list entry that is neither a host name,
    an address nor a network.
    """

    allow_private: bool = False
    allowed_hosts: frozenset = field(default_factory=frozenset)  # lower-case host names
    allowed_networks: tuple = ()  # IPv4Network / IPv6Network

    @classmethod
    def parse(cls, allow_hosts: Optional[str] = None, allow_private: Optional[str] = None) -> "NetworkPolicy":
        """The policy that the two settings' raw values describe (see the module doc)."""
        flag = (allow_private or "").strip().lower()
        if flag not in _TRUE | _FALSE:
            raise ValueError(f"MSEARCH_ALLOW_PRIVATE_NETWORKS must be 0 or 1, got {allow_private!r}")
        hosts, networks = set(), []
        for entry in (allow_hosts or "").split(","):
            entry = entry.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if not _looks_like_host_name(entry):
                raise ValueError(f"MSEARCH_ALLOW_HOSTS: {entry!r} is neither a host name, an IP address "
                                 "nor a network such as 10.0.0.0/8")
            hosts.add(entry)
        return cls(allow_private=flag in _TRUE, allowed_hosts=frozenset(hosts), allowed_networks=tuple(networks))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "NetworkPolicy":
        """The policy of MSEARCH_ALLOW_HOSTS and MSEARCH_ALLOW_PRIVATE_NETWORKS in ``env``.
        Raises ValueError for a malformed value."""
        return cls.parse(env.get("MSEARCH_ALLOW_HOSTS"), env.get("MSEARCH_ALLOW_PRIVATE_NETWORKS"))

    def host_is_allowed(self, host: str) -> bool:
        """Whether ``host`` is allow-listed by name (then any address it resolves to is fine)."""
        return host.lower().rstrip(".").strip("[]") in self.allowed_hosts

    def check_address(self, host: str, address: str) -> None:
        """Raise AddressRefusedError unless ``host`` may be reached at ``address``."""
        if self.host_is_allowed(host):
            return
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)
        if any(ip in network for network in self.allowed_networks if network.version == ip.version):
            return
        reason = refusal_reason(ip, allow_private=self.allow_private)
        if reason is not None:
            raise AddressRefusedError(host, str(ip), reason)


def refusal_reason(ip: IPAddress, allow_private: bool = False) -> Optional[str]:
    """Why ``ip`` must not be fetched from, as "a ... address" (None: it may be). Addresses that embed an IPv4 address
    (IPv4-mapped, NAT64, 6to4, Teredo) are judged by the embedded address as well."""
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        reason = refusal_reason(embedded, allow_private)
        if reason is not None:
            return reason
        if ip.ipv4_mapped is not None:
            return None  # ::ffff:a.b.c.d is a.b.c.d
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_link_local:
        return "a link-local address (cloud metadata services live here)"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_loopback:
        return None if allow_private else "a loopback address"
    if ip.version == 4 and ip in _SHARED or ip.version == 6 and ip in ipaddress.ip_network("fc00::/7") \
            or ip.version == 4 and any(ip in n for n in _RFC1918):
        return None if allow_private else "a private network address"
    if ip.is_reserved or ip.is_private or not ip.is_global:
        return "a reserved or non-routable address"
    return None


_RFC1918 = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


def _embedded_ipv4(ip: IPAddress) -> Optional[ipaddress.IPv4Address]:
    if ip.version != 6:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # (server, client): the client is where packets end up
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _looks_like_host_name(text: str) -> bool:
    labels = text.split(".")
    return all(label and len(label) <= 63 and all(c.isalnum() or c in "-_*" for c in label) for label in labels)


def resolve_allowed(host: str, port: int, policy: NetworkPolicy) -> list[tuple]:
    """Resolve ``host`` and return its ``getaddrinfo`` entries (family, type, proto, name, sockaddr)
    for TCP, after checking every address against ``policy``.

    A host with any refused address is refused as a whole: a name that resolves to a public and
    a private address is either misconfigured or a rebinding attempt. Raises AddressRefusedError,
    or socket.gaierror when the name does not resolve.
    """
    bare = host.strip("[]")
    entries = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM)
    for entry in entries:
        policy.check_address(host, entry[4][0])
    return entries


def check_url(url: str, policy: NetworkPolicy) -> None:
    """Check where an http(s) ``url`` would connect, before fetching it (e.g. a query-image URL).

    Raises AddressRefusedError for a refused address, ValueError for a URL without an http(s)
    scheme or host, socket.gaierror when the host does not resolve. Fetching through
    :class:`harvest.http.Fetcher` checks again at connection time (and on every redirect), which
    closes the gap between this look-up and the connection (DNS rebinding).
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL with a host: {url[:200]!r}")
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    resolve_allowed(parts.hostname, port, policy)
