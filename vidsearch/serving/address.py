"""Addresses: whether a host reaches this machine only (light: the client imports it too)."""

import ipaddress


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or name, IPv6 with or without brackets) reaches this machine only."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another name: it may resolve to any address


def host_of(target: str) -> str:
    """The host of a gRPC target `host:port`, `[v6]:port` or `dns:///host:port`."""
    address = target.rsplit("/", 1)[-1]
    if address.startswith("["):
        return address[1 : address.find("]")]
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address
