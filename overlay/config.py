"""Node configuration (TOML). Every option is documented in README.md; unknown keys are errors."""
from __future__ import annotations

from typing import Any
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from trust.errors import ConfigError
from trust.intake import IntakeLimits
from trust.peerid import is_peer_id
from trust.manifest import DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE
from overlay.net.limits import ConnectionLimits
from overlay.net.stream_limits import StreamLimits

MAX_CONFIG_BYTES = 256 * 1024

DEFAULT_CONFIG = """\
# vouchnet configuration. Every option is documented in README.md ("Configuration").

[node]
# Multiaddrs to listen on. Port 0 picks a free port.
listen = ["/ip4/127.0.0.1/tcp/0"]
# Peers to dial at start-up: full multiaddrs ending in /p2p/<peer ID>.
bootstrap = []
# Local-network discovery (mDNS). Off by default: it announces you to the LAN.
mdns = false
# Concurrent content streams one peer may hold open on this node.
streams_per_peer = 4

[content]
# Chunk size in bytes for content this node shares: a power of two, 16 KiB to 4 MiB.
chunk_size = 262144
# Seconds a request (serving) or a single response frame (fetching) may take before the peer
# is treated as stalled; a stalled provider's chunks are fetched from another provider.
request_timeout = 10.0
# Providers a fetch downloads from in parallel.
max_providers = 4

[reputation]
# Seconds between trust recomputations (each one signs attestations and a ledger head).
interval = 2.0
# Pre-trusted anchors: peer IDs whose judgement this node starts from (personalised trust).
anchors = []
# EigenTrust damping a: weight of the anchors in t = (1-a)·Cᵀt + a·p.
damping = 0.15
# Peers reported bad (global trust at or below this, no own positive evidence) are distrusted.
trust_floor = 0.0

[limits]
# Inbound connections (shown with their use and refusals by `vouchnet status`). Peers that are
# neither anchors nor trusted (trust > 0 here) share at most connections_strangers of
# connections_total; the rest is kept for anchors and trusted peers, so sybils cannot crowd
# them out. The per-IP and per-subnet limits are checked before the handshake, for everyone.
# Established inbound connections at once.
connections_total = 256
# Of those, at most this many from strangers and newcomers.
connections_strangers = 192
# From one peer ID (py-libp2p keeps one per peer; a reconnect may briefly overlap it).
connections_per_peer = 2
# From one IP address, handshakes in progress included.
connections_per_ip = 8
# From one /24 (IPv4) or /48 (IPv6) network, handshakes in progress included.
connections_per_subnet = 32
# Inbound connections still in the Noise + Yamux handshake.
handshakes_pending = 64
# Content requests answered at once; strangers may hold at most streams_strangers of them,
# the rest is kept for anchors and trusted peers. (Per peer: node.streams_per_peer.)
streams_total = 64
streams_strangers = 48
# Streams whose request is still arriving (each gets 2 s to send it; a slow sender holds one of
# these, never a serving slot).
requests_pending = 256
# Gossip intake (shown with drops by reason by `vouchnet status`): what one issuer may make
# this node keep. Trusted issuers (anchors, trust > 0 here) get the larger allowance.
# Distinct subjects one issuer's attestations may occupy.
attestation_subjects_stranger = 256
attestation_subjects_trusted = 8192
# Attestations stored per second per issuer, sustained (bursts: 256 / 8192).
attestation_rate_stranger = 1.0
attestation_rate_trusted = 50.0
# (issuer, subject) pairs held from all strangers together, and from everyone.
attestations_strangers = 10000
attestations_total = 100000
# Signed ledger heads kept per peer (the latest).
peer_heads_stranger = 4
peer_heads_trusted = 64

[metrics]
# Prometheus /metrics endpoint, bound to 127.0.0.1 only.
enabled = false
port = 9464

# Local trust policy (TOML, see docs/policy.md); a relative path is relative to the home folder.
# Default: policy.toml in the home folder if it exists, else allow all but proven equivocators.
# `vouchnet --policy FILE` (or $VOUCHNET_POLICY) overrides this.
# [policy]
# file = "policy.toml"
"""


@dataclass
class Config:
    listen: list[str] = field(default_factory=lambda: ["/ip4/127.0.0.1/tcp/0"])
    bootstrap: list[str] = field(default_factory=list)
    mdns: bool = False
    streams_per_peer: int = 4
    chunk_size: int = DEFAULT_CHUNK_SIZE
    request_timeout: float = 10.0
    max_providers: int = 4
    reputation_interval: float = 2.0
    anchors: list[str] = field(default_factory=list)
    damping: float = 0.15
    trust_floor: float = 0.0
    metrics_enabled: bool = False
    metrics_port: int = 9464
    policy_file: str = ""
    connections_total: int = 256
    connections_strangers: int = 192
    connections_per_peer: int = 2
    connections_per_ip: int = 8
    connections_per_subnet: int = 32
    handshakes_pending: int = 64
    streams_total: int = 64
    streams_strangers: int = 48
    requests_pending: int = 256
    attestation_subjects_stranger: int = 256
    attestation_subjects_trusted: int = 8192
    attestation_rate_stranger: float = 1.0
    attestation_rate_trusted: float = 50.0
    attestations_strangers: int = 10_000
    attestations_total: int = 100_000
    peer_heads_stranger: int = 4
    peer_heads_trusted: int = 64

    def intake_limits(self) -> IntakeLimits:
        d = IntakeLimits()
        return IntakeLimits(
            stranger=replace(d.stranger, subjects=self.attestation_subjects_stranger,
                             rate=float(self.attestation_rate_stranger), heads=self.peer_heads_stranger),
            trusted=replace(d.trusted, subjects=self.attestation_subjects_trusted,
                            rate=float(self.attestation_rate_trusted), heads=self.peer_heads_trusted),
            strangers_total=self.attestations_strangers, total=self.attestations_total)

    def connection_limits(self) -> ConnectionLimits:
        return ConnectionLimits(total=self.connections_total, strangers=self.connections_strangers,
                                per_peer=self.connections_per_peer, per_ip=self.connections_per_ip,
                                per_subnet=self.connections_per_subnet, pending=self.handshakes_pending)

    def stream_limits(self) -> StreamLimits:
        return StreamLimits(total=self.streams_total, strangers=self.streams_strangers,
                            pending=self.requests_pending, per_peer=self.streams_per_peer)


_SCHEMA: dict[str, dict[str, tuple[Any, str]]] = {
    "node": {"listen": (list, "listen"), "bootstrap": (list, "bootstrap"), "mdns": (bool, "mdns"),
             "streams_per_peer": (int, "streams_per_peer")},
    "content": {"chunk_size": (int, "chunk_size"), "request_timeout": ((int, float), "request_timeout"),
                "max_providers": (int, "max_providers")},
    "reputation": {"interval": ((int, float), "reputation_interval"), "anchors": (list, "anchors"),
                   "damping": ((int, float), "damping"), "trust_floor": ((int, float), "trust_floor")},
    "metrics": {"enabled": (bool, "metrics_enabled"), "port": (int, "metrics_port")},
    "policy": {"file": (str, "policy_file")},
    "limits": {**{k: (int, k) for k in ("connections_total", "connections_strangers", "connections_per_peer",
                                        "connections_per_ip", "connections_per_subnet", "handshakes_pending",
                                        "streams_total", "streams_strangers", "requests_pending",
                                        "attestation_subjects_stranger", "attestation_subjects_trusted",
                                        "attestations_strangers", "attestations_total",
                                        "peer_heads_stranger", "peer_heads_trusted")},
               **{k: ((int, float), k) for k in ("attestation_rate_stranger", "attestation_rate_trusted")}},
}
# ConnectionLimits field -> its [limits] key, for error messages.
_LIMIT_KEYS = {"total": "connections_total", "strangers": "connections_strangers", "per_peer": "connections_per_peer",
               "per_ip": "connections_per_ip", "per_subnet": "connections_per_subnet", "pending": "handshakes_pending"}
_STREAM_KEYS = {"total": "streams_total", "strangers": "streams_strangers", "pending": "requests_pending",
                "per_peer": "node.streams_per_peer"}


def parse_config(text: str, source: str = "config") -> Config:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    cfg = Config()
    for section, value in doc.items():
        if section not in _SCHEMA:
            raise ConfigError(f"{source}: unknown section [{section}] (known: {', '.join(_SCHEMA)})")
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        for key, item in value.items():
            if key not in _SCHEMA[section]:
                raise ConfigError(f"{source}: unknown key {section}.{key} (known: {', '.join(_SCHEMA[section])})")
            typ, attr = _SCHEMA[section][key]
            if not isinstance(item, typ) or (typ is not bool and isinstance(item, bool)):
                want = " or ".join(t.__name__ for t in typ) if isinstance(typ, tuple) else typ.__name__
                raise ConfigError(f"{source}: {section}.{key} must be a {want}, got {type(item).__name__}")
            if typ is list and not all(isinstance(x, str) for x in item):
                raise ConfigError(f"{source}: {section}.{key} must be a list of strings")
            setattr(cfg, attr, item)
    _check(cfg, source)
    return cfg


def _check(cfg: Config, source: str) -> None:
    c = cfg.chunk_size
    if not (MIN_CHUNK_SIZE <= c <= MAX_CHUNK_SIZE) or c & (c - 1):
        raise ConfigError(f"{source}: content.chunk_size must be a power of two from {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE}")
    if not 0.1 <= cfg.request_timeout <= 600:
        raise ConfigError(f"{source}: content.request_timeout must be 0.1-600 seconds")
    if not 1 <= cfg.max_providers <= 32 or not 1 <= cfg.streams_per_peer <= 64:
        raise ConfigError(f"{source}: content.max_providers must be 1-32 and node.streams_per_peer 1-64")
    if not 0.05 <= cfg.reputation_interval <= 3600:
        raise ConfigError(f"{source}: reputation.interval must be 0.05-3600 seconds")
    if not 0 < cfg.damping <= 1 or not 0 <= cfg.trust_floor < 1:
        raise ConfigError(f"{source}: reputation.damping must be in (0, 1] and trust_floor in [0, 1)")
    bad = [a for a in cfg.anchors if not is_peer_id(a)]
    if bad:
        raise ConfigError(f"{source}: reputation.anchors: {bad[0]!r} is not a peer ID")
    if not 1 <= cfg.metrics_port <= 65535:
        raise ConfigError(f"{source}: metrics.port must be 1-65535")
    problem = cfg.connection_limits().check(_LIMIT_KEYS)
    if problem:
        raise ConfigError(f"{source}: limits.{problem}")
    problem = cfg.stream_limits().check(_STREAM_KEYS)
    if problem:
        raise ConfigError(f"{source}: {'' if problem.startswith('node.') else 'limits.'}{problem}")
    problem = cfg.intake_limits().check() or (None if cfg.attestations_total <= 10_000_000 else
                                               "attestations_total must be at most 10,000,000")
    if problem:  # (IntakeLimits.check names its fields: strangers_total = attestations_strangers, ...)
        raise ConfigError(f"{source}: limits: attestation and peer head limits: {problem}")
    if len(cfg.listen) > 16 or len(cfg.bootstrap) > 64:
        raise ConfigError(f"{source}: at most 16 listen and 64 bootstrap addresses")


def load_config(path: Path) -> Config:
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return Config()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8") from None
    return parse_config(text, str(path))
