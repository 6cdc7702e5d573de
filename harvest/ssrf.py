"""urllib3 connections that connect only to addresses the network policy allows.

The check sits in the connection itself (:meth:`_new_conn`): the host is resolved once, every
address is checked with :class:`manuscripts_search.netguard.NetworkPolicy`, and the socket is
opened to a checked address, never to a second look-up's answer. So a name that resolves to a
public address when checked and to 127.0.0.1 when connecting (DNS rebinding) cannot slip through,
and each redirect hop, being a new request, is checked again. TLS still verifies the certificate
against the host name, since only the socket's peer address is pinned.
"""
from __future__ import annotations

import socket

from manuscripts_search.netguard import NetworkPolicy, resolve_allowed


def guarded_pool_manager(policy: NetworkPolicy, **pool_options):
    """A ``urllib3.PoolManager`` whose connections refuse what ``policy`` refuses.

    A refused address raises :class:`~manuscripts_search.netguard.AddressRefusedError` out of
    ``urlopen`` (it is not an OSError, so urllib3 does not wrap or retry it).
    """
    import urllib3
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class GuardedHTTPConnection(_GuardMixin, HTTPConnection):
        network_policy = policy

    class GuardedHTTPSConnection(_GuardMixin, HTTPSConnection):
        network_policy = policy

    class GuardedHTTPConnectionPool(HTTPConnectionPool):
        ConnectionCls = GuardedHTTPConnection

    class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPSConnection

    manager = urllib3.PoolManager(**pool_options)
    manager.pool_classes_by_scheme = {"http": GuardedHTTPConnectionPool, "https": GuardedHTTPSConnectionPool}
    return manager


class _GuardMixin:
    network_policy: NetworkPolicy

    def _new_conn(self) -> socket.socket:
        from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
        from urllib3.util.connection import create_connection

        try:
            entries = resolve_allowed(self.host, self.port, self.network_policy)
        except socket.gaierror as error:
            raise NameResolutionError(self.host, self, error) from error
        last_error: OSError | None = None
        for _family, _type, _proto, _name, sockaddr in entries:
            try:
                return create_connection((sockaddr[0], self.port), self.timeout,
                                         source_address=self.source_address, socket_options=self.socket_options)
            except socket.timeout as error:
                raise ConnectTimeoutError(
                    self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})") from error
            except OSError as error:
                last_error = error  # try the host's next address, as urllib3 itself would
        raise NewConnectionError(self, f"Failed to establish a new connection: {last_error}")
