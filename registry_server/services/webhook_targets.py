"""Where webhooks may be sent: public addresses only, checked when the URL is given and
again on every connection, so DNS rebinding cannot get around it.

Loopback, private, link-local (which holds the cloud metadata address 169.254.169.254),
shared, reserved, multicast and unspecified addresses are refused, including IPv4 ones
wrapped in IPv6 (``::ffff:a.b.c.d``, 6to4, NAT64). The setting
``MLOPS_REGISTRY_WEBHOOK_ALLOW_PRIVATE=true`` allows them (tests, a receiver on the same
host). At send time :class:`GuardedTransport` resolves the host itself, checks every
address the name resolves to and connects to a checked address; TLS still verifies the
certificate for the host name. A refused target is never contacted, so the delivery log
reads the same whether a port there is open or closed.

Example:
    >>> refused_reason("127.0.0.1")
    'a loopback address'
    >>> refused_reason("93.184.215.14") is None
    True
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from mlops.errors import MlopsError

__all__ = ["GuardedTransport", "Resolver", "WebhookTargetRefused", "check_url", "refused_reason"]

Resolver = Callable[..., list[tuple[Any, ...]]]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SETTING = "MLOPS_REGISTRY_WEBHOOK_ALLOW_PRIVATE"


class WebhookTargetRefused(MlopsError, ValueError):
    """A webhook URL points at a loopback, private, link-local or metadata address."""

    code = "webhook_target_refused"
    default_hint = (
        "Use a URL whose host resolves only to public addresses; for a receiver on this "
        f"host or network (tests), start the server with {_SETTING}=true."
    )


def _unwrap(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Any:
    """The IPv4 address inside an IPv4-mapped, 6to4 or NAT64 IPv6 address, else ``ip``."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def refused_reason(address: str) -> str | None:
    """Why a webhook may not connect to ``address`` (an IP literal), or ``None``.

    Example:
        >>> refused_reason("169.254.169.254")
        'a link-local (cloud metadata) address'
    """
    ip = _unwrap(ipaddress.ip_address(address.split("%", 1)[0]))
    checks = (
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local (cloud metadata) address"),
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_private, "a private address"),
        (not ip.is_global, "a reserved or shared address"),
    )
    return next((why for hit, why in checks if hit), None)


def _addresses(host: str, port: int, resolve: Resolver) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        infos = resolve(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise httpx.ConnectError(f"cannot resolve {host!r}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _refuse(host: str, addresses: Iterable[str]) -> None:
    for address in addresses:
        why = refused_reason(address)
        if why is not None:
            raise WebhookTargetRefused(
                f"The webhook host {host!r} resolves to {address}, {why}; webhooks are "
                "not sent to loopback, private, link-local or metadata addresses."
            )


def check_url(url: str, *, resolve: Resolver = socket.getaddrinfo) -> None:
    """Raise :class:`WebhookTargetRefused` if ``url``'s host is, or resolves to, a
    refused address. A name that does not resolve now is accepted (it is checked again
    at every connection).

    Example:
        >>> check_url("http://[::1]:8080/hook")
        Traceback (most recent call last):
        ...
        registry_server.services.webhook_targets.WebhookTargetRefused: The webhook host ...
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        raise WebhookTargetRefused(
            f"The webhook host {host!r} is a loopback name; webhooks are not sent to "
            "loopback, private, link-local or metadata addresses."
        )
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = _addresses(host, port, resolve)
    except httpx.ConnectError:
        return
    _refuse(host, addresses)


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves, checks every address, then connects to a checked one (no second lookup)."""

    def __init__(self, resolve: Resolver, *, allow_private: bool) -> None:
        self._resolve = resolve
        self._allow_private = allow_private

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = _addresses(host, port, self._resolve)
        if not self._allow_private:
            _refuse(host, addresses)
        error: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error or httpcore.ConnectError(f"no address for {host!r}")


class GuardedTransport(httpx.HTTPTransport):
    """An httpx transport that refuses non-public targets at connect time (unless
    ``allow_private``), and ignores proxy environment variables (a proxy would connect on
    our behalf, unchecked).

    Example:
        >>> client = httpx.Client(transport=GuardedTransport())  # doctest: +SKIP
    """

    def __init__(
        self, *, resolve: Resolver = socket.getaddrinfo, allow_private: bool = False
    ) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=_GuardedBackend(resolve, allow_private=allow_private),
        )
