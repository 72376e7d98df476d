"""Prometheus metrics, served on 127.0.0.1 only when enabled in the config."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.peers = Gauge("vouchnet_connected_peers", "Peers with an open connection", registry=r)
        self.bytes_served = Counter("vouchnet_bytes_served_total", "Chunk bytes served to peers", registry=r)
        self.bytes_fetched = Counter("vouchnet_bytes_fetched_total", "Verified chunk bytes fetched", registry=r)
        self.verification_failures = Counter(
            "vouchnet_verification_failures_total", "Chunks or manifests that failed verification", ["kind"], registry=r)
        self.requests = Counter("vouchnet_requests_total", "Content requests served", ["type", "outcome"], registry=r)
        self.request_seconds = Histogram(
            "vouchnet_request_seconds", "Time to serve one content request", registry=r,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10))
        self.fetch_seconds = Histogram(
            "vouchnet_fetch_seconds", "Time to fetch one content item", registry=r,
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300))
        # Reputation gossip on the wire (overlay.net.gossip); direction is "sent" or "received".
        self.gossip_rpcs = Counter(
            "vouchnet_gossip_rpcs_total", "GossipSub RPC frames (messages and control)", ["direction"], registry=r)
        self.gossip_bytes = Counter(
            "vouchnet_gossip_bytes_total", "Bytes of GossipSub RPC frames, length prefixes included", ["direction"],
            registry=r)
        self.gossip_messages = Counter(
            "vouchnet_gossip_messages_total", "Published messages in those RPCs (forwards and duplicates included)",
            ["direction"], registry=r)

        self.stream_failures = Counter(
            "vouchnet_stream_failures_total", "Inbound streams ended by a failure (the node kept serving)",
            ["protocol", "error"], registry=r)

        self.connections_refused = Counter(
            "vouchnet_connections_refused_total", "Inbound connections refused by the [limits] (overlay.net.limits)",
            ["reason"], registry=r)

        self.streams_refused = Counter(
            "vouchnet_streams_refused_total", "Inbound content streams refused by the [limits] (overlay.net.stream_limits)",
            ["reason"], registry=r)

        self.window_violations = Counter(
            "vouchnet_window_violations_total",
            "Connections closed for sending past the Yamux receive window or over the buffering limits",
            ["reason"], registry=r)

        self.gossip_dropped = Counter(
            "vouchnet_gossip_dropped_total",
            "Verified attestations and heads not kept: over the per-issuer intake caps (trust.intake)",
            ["kind", "reason"], registry=r)

        self.identify_trimmed = Counter(
            "vouchnet_identify_trimmed_total",
            "Items a peer's identify or identify-push carried past the limits, dropped (libp2p_compat (v))",
            ["field"], registry=r)

    def count_gossip_dropped(self, kind: str, reason: str) -> None:
        self.gossip_dropped.labels(kind, reason).inc()

    def count_identify_trimmed(self, field: str, n: int) -> None:
        self.identify_trimmed.labels(field).inc(n)

    def count_connection_refused(self, reason: str) -> None:
        self.connections_refused.labels(reason).inc()

    def count_window_violation(self, reason: str) -> None:
        self.window_violations.labels(reason).inc()

    def count_stream_failure(self, protocol: str, exc: BaseException) -> None:
        self.stream_failures.labels(protocol, type(exc).__name__).inc()

    def count_gossip(self, direction: str, rpcs: int, nbytes: int, messages: int) -> None:
        if rpcs:
            self.gossip_rpcs.labels(direction).inc(rpcs)
            self.gossip_bytes.labels(direction).inc(nbytes)
        if messages:
            self.gossip_messages.labels(direction).inc(messages)

    def serve(self, port: int) -> None:
        # Bound to loopback: metrics reveal peers and traffic, not for the network.
        start_http_server(port, addr="127.0.0.1", registry=self.registry)
