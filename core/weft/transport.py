"""Which network interface a job's processes talk over.

A single-node job must not listen on the network: the rendezvous store already binds to
loopback (see :mod:`weft.distributed`), and :func:`choose_transport_interface` makes gloo's
transport do the same by setting ``GLOO_SOCKET_IFNAME`` before the process group is created
(torch ignores gloo's ``pg_options`` devices). A multi-node job uses the interface that routes
to the main address; a ``GLOO_SOCKET_IFNAME`` the user set always wins.

.. versionadded:: 0.3
"""

from __future__ import annotations

import ipaddress
import os
import socket


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback address (no name resolution)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


GLOO_IFNAME_ENV = "GLOO_SOCKET_IFNAME"
_SIOCGIFADDR = 0x8915  # Linux ioctl: an interface's IPv4 address


def resolves_to_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) means this machine's loopback."""
    if is_loopback(host):
        return True
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def interface_addresses() -> dict[str, str]:
    """Each network interface's IPv4 address (Linux; empty where the ioctl is unavailable)."""
    try:
        import fcntl
        import struct
    except ImportError:
        return {}
    found = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
            except OSError:  # no IPv4 address on this interface
                continue
            found[name] = socket.inet_ntoa(packed[20:24])
    return found


def loopback_interface() -> str | None:
    """The loopback interface's name ("lo" on Linux, "lo0" on macOS)."""
    for name, address in interface_addresses().items():
        if ipaddress.ip_address(address).is_loopback:
            return name
    names = [name for _, name in socket.if_nameindex()]
    return next((n for n in names if n in ("lo", "lo0")), None)


def address_towards(host: str, port: int) -> str | None:
    """The local address this machine uses to reach ``host``: connecting a UDP socket sends
    nothing, but makes the kernel pick the route and so the source address."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((host, port))
            return probe.getsockname()[0]
    except OSError:
        return None


def choose_transport_interface(address: str, port: int, world_size: int) -> str | None:
    """Pick the interface gloo's transport listens on and set ``GLOO_SOCKET_IFNAME`` to it.

    Without it, gloo listens on whatever address the hostname resolves to: on cluster
    nodes that is the node's network address, so a single-node job would accept
    connections from the network. A single-node job (main address on loopback, or every
    rank on this node) uses loopback; a multi-node job the interface that routes to the
    main address. A ``GLOO_SOCKET_IFNAME`` the user set wins. Returns the interface set,
    or ``None`` when weft left the choice alone.
    """
    if os.environ.get(GLOO_IFNAME_ENV):
        return None
    single_node = resolves_to_loopback(address) or os.environ.get("LOCAL_WORLD_SIZE") == str(world_size)
    if single_node:
        chosen = loopback_interface()
    else:
        local = address_towards(address, port)
        chosen = next((n for n, a in interface_addresses().items() if a == local), None) if local else None
    if chosen:
        # Kept for the life of the process: later gloo groups (dist.new_group) then bind the same way.
        os.environ[GLOO_IFNAME_ENV] = chosen
    return chosen
