"""Which endpoints notifications may go to: a guard against server-side request forgery.

A subscription names a URL the server will call, so without a guard any client could make the
server reach its own admin ports, the cloud metadata address or the private network. Only
globally routable unicast addresses are allowed, unless the host name or the address (or a CIDR
network containing it) is listed in `FHIR_SERVER_SUBSCRIPTION_ALLOWED_HOSTS`. A DNS name is
resolved and every address it resolves to must pass, when the subscription is written and again
before each delivery (a name can be re-pointed after it was accepted). Redirects are not followed.

Residual risk, stated plainly: the HTTP client resolves the name again when it connects, so a
name with a very short TTL could still change between the check and the connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

from fhir_server.errors import Unprocessable
from fhir_server.subscriptions.model import check_endpoint_url

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class EndpointRefused(Unprocessable):
    """The endpoint resolves to an address the server must not call."""


@dataclass(frozen=True, slots=True)
class AllowList:
    hosts: frozenset[str]  # lower-case host names and address literals
    networks: tuple[Network, ...]

    @classmethod
    def parse(cls, text: str) -> AllowList:
        """`FHIR_SERVER_SUBSCRIPTION_ALLOWED_HOSTS`: comma-separated names, addresses, CIDRs."""
        hosts: set[str] = set()
        networks: list[Network] = []
        for item in text.split(","):
            item = item.strip().lower().removeprefix("[").removesuffix("]")
            if not item:
                continue
            if "/" in item:
                try:
                    networks.append(ipaddress.ip_network(item, strict=False))
                    continue
                except ValueError:
                    pass
            hosts.add(_canonical(item))
        return cls(frozenset(hosts), tuple(networks))

    def allows_host(self, host: str) -> bool:
        return _canonical(host.lower()) in self.hosts

    def allows_address(self, address: Address) -> bool:
        return str(address) in self.hosts or any(address in n for n in self.networks)


def _canonical(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.rstrip(".")


def refusal(address: Address) -> str | None:
    """Why the server must not call `address`, or None if it is a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    checks = (
        (address.is_unspecified, "unspecified"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address.is_private, "private"),
        (isinstance(address, ipaddress.IPv6Address) and address.is_site_local, "site-local"),
        (address.is_reserved, "reserved"),
        (not address.is_global, "non-global"),
    )
    return next((name for hit, name in checks if hit), None)


def check_addresses(host: str, addresses: list[Address], allowed: AllowList) -> None:
    """Raise `EndpointRefused` unless every address is public or explicitly allowed."""
    if allowed.allows_host(host):
        return
    for address in addresses:
        reason = refusal(address)
        if reason is not None and not allowed.allows_address(address):
            raise EndpointRefused(
                f"channel.endpoint host '{host}' is a {reason} address ({address}); the server "
                "does not call it unless it is listed in FHIR_SERVER_SUBSCRIPTION_ALLOWED_HOSTS",
                code="security",
                expression=["Subscription.channel.endpoint"],
            )


async def resolve(host: str, timeout_s: float) -> list[Address]:
    """The addresses of `host` (itself if it is a literal); empty if it does not resolve."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), timeout_s
        )
    except (OSError, TimeoutError, UnicodeError):
        return []
    out: list[Address] = []
    for info in infos:
        text = str(info[4][0]).split("%")[0]  # drop an IPv6 zone index
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            continue
        if address not in out:
            out.append(address)
    return out


async def check_endpoint(endpoint: str, allowed: AllowList, timeout_s: float = 5.0) -> None:
    """Refuse an endpoint whose host is, or resolves to, an address the server must not call.

    A name that does not resolve (now) is let through: delivery will fail and say so, and the
    check runs again before every delivery.
    """
    host = check_endpoint_url(endpoint)
    if allowed.allows_host(host):
        return
    check_addresses(host, await resolve(host, timeout_s), allowed)
