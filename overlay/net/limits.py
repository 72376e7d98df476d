"""Inbound connection limits with a share reserved for trusted peers (issue 10, H10).

A pure decision object: :class:`ConnectionGate` is told about every inbound connection twice,
before the Noise handshake (only the remote IP is known: :meth:`ConnectionGate.begin`) and after
it (the peer ID and whether we trust it: :meth:`ConnectionGate.establish`), and once more when
the connection ends (:meth:`ConnectionGate.end`). Each call answers None (admitted) or the
reason of a refusal. The IP limits are checked before the handshake so a flood from one address
or subnet costs no handshake CPU; the trusted share can only be checked after it.

Sybils can make any number of identities but cannot make trust: at most ``strangers`` of the
``total`` established connections go to peers we do not trust, so the rest always stays free
for anchors and trusted peers. Outbound connections (the node chose to dial them) are not
counted here. The hook into py-libp2p is libp2p_compat (t).
"""
from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Hashable

__all__ = ["ConnectionLimits", "ConnectionGate", "REASONS", "check_counts", "subnet_of"]

# Why a connection was refused; also the `reason` label of vouchnet_connections_refused_total.
REASONS = ("total", "strangers", "per_peer", "per_ip", "per_subnet", "pending")


@dataclass(frozen=True)
class ConnectionLimits:
    """Inbound connection limits (config.toml [limits], documented in README.md)."""

    total: int = 256        # established inbound connections at once
    strangers: int = 192    # of those, from peers that are neither anchors nor trusted
    per_peer: int = 2       # from one peer ID (py-libp2p keeps one; a reconnect may overlap it)
    per_ip: int = 8         # from one IP address (handshakes in progress included)
    per_subnet: int = 32    # from one /24 (IPv4) or /48 (IPv6) (handshakes included)
    pending: int = 64       # inbound connections still in the Noise + Yamux handshake

    def check(self, names: dict[str, str] | None = None) -> str | None:
        """None if consistent, else what is wrong (for a ConfigError); ``names``: field -> config key."""
        problem = check_counts(self, names)
        if problem is None and self.per_ip > self.per_subnet:
            n = names or {}
            problem = f"{n.get('per_ip', 'per_ip')} must not exceed {n.get('per_subnet', 'per_subnet')}"
        return problem


def check_counts(limits: Any, names: dict[str, str] | None = None) -> str | None:
    """Every field of the ``limits`` dataclass an integer from 1 to 65536, and its ``strangers``
    share not above its ``total`` (the rest is what trusted peers keep); else what is wrong."""
    n = {f: (names or {}).get(f, f) for f in asdict(limits)}
    for name, value in asdict(limits).items():
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65536:
            return f"{n[name]} must be an integer from 1 to 65536"
    if limits.strangers > limits.total:
        return f"{n['strangers']} must not exceed {n['total']} (the rest is reserved for trusted peers)"
    return None


def subnet_of(ip: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) holding ``ip``; an IPv4-mapped IPv6 address counts as IPv4."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return f"?{ip}"  # not an IP (another transport): its own bucket
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def _norm_ip(ip: str) -> str:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


@dataclass
class _Entry:
    ip: str
    subnet: str
    peer: str = ""
    trusted: bool = False
    established: bool = False


class ConnectionGate:
    """Admits or refuses inbound connections from current counts; counts the refusals."""

    def __init__(self, limits: ConnectionLimits | None = None) -> None:
        self.limits = limits or ConnectionLimits()
        problem = self.limits.check()
        if problem:
            raise ValueError(problem)
        self._entries: dict[Hashable, _Entry] = {}
        self._ips: Counter[str] = Counter()
        self._subnets: Counter[str] = Counter()
        self._peers: Counter[str] = Counter()
        self.established = 0
        self.strangers = 0
        self.pending = 0
        self.refused: Counter[str] = Counter()

    def begin(self, key: Hashable, ip: str) -> str | None:
        """Before the handshake: admit a connection from ``ip`` as pending, or say why not."""
        if key in self._entries:
            raise ValueError("connection key already in use")
        ip = _norm_ip(ip)
        subnet = subnet_of(ip)
        lim = self.limits
        reason = None
        if self._ips[ip] >= lim.per_ip:
            reason = "per_ip"
        elif self._subnets[subnet] >= lim.per_subnet:
            reason = "per_subnet"
        elif self.pending >= lim.pending:
            reason = "pending"
        elif self.established + self.pending >= lim.total:
            reason = "total"
        if reason:
            self.refused[reason] += 1
            return reason
        self._entries[key] = _Entry(ip, subnet)
        self._ips[ip] += 1
        self._subnets[subnet] += 1
        self.pending += 1
        return None

    def establish(self, key: Hashable, peer: str, trusted: bool, ip: str | None = None) -> str | None:
        """After the handshake: admit ``peer`` on connection ``key``, or refuse (and forget) it.

        A connection the gate did not see before its handshake (``begin``) needs ``ip``; it is
        then checked against the IP limits here."""
        entry = self._entries.get(key)
        if entry is None:
            if ip is None:
                raise ValueError("unknown connection and no ip given")
            reason = self.begin(key, ip)
            if reason:
                return reason
            entry = self._entries[key]
        if entry.established:
            raise ValueError("connection already established")
        lim = self.limits
        reason = None
        if self._peers[peer] >= lim.per_peer:
            reason = "per_peer"
        elif not trusted and self.strangers >= lim.strangers:
            reason = "strangers"
        elif self.established >= lim.total:
            reason = "total"
        if reason:
            self.end(key)
            self.refused[reason] += 1
            return reason
        self.pending -= 1
        entry.peer, entry.trusted, entry.established = peer, trusted, True
        self._peers[peer] += 1
        self.established += 1
        if not trusted:
            self.strangers += 1
        return None

    def end(self, key: Hashable) -> None:
        """The connection is gone (or was refused): free what it held. Idempotent."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        _dec(self._ips, entry.ip)
        _dec(self._subnets, entry.subnet)
        if entry.established:
            _dec(self._peers, entry.peer)
            self.established -= 1
            if not entry.trusted:
                self.strangers -= 1
        else:
            self.pending -= 1

    def keys(self) -> list[Hashable]:
        return list(self._entries)

    def snapshot(self) -> dict[str, Any]:
        """Limits, current use and refusals by reason (for `vouchnet status`)."""
        return {
            "limits": asdict(self.limits),
            "in_use": {"total": self.established, "strangers": self.strangers,
                       "trusted": self.established - self.strangers, "pending": self.pending,
                       "peers": len(self._peers), "ips": len(self._ips), "subnets": len(self._subnets),
                       "max_per_ip": max(self._ips.values(), default=0),
                       "max_per_subnet": max(self._subnets.values(), default=0)},
            "refused": {r: self.refused.get(r, 0) for r in REASONS},
        }


def _dec(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
