"""The ONE place for py-libp2p 0.8 workarounds.

Every workaround below names the behaviour it works around and where in the installed
library (``libp2p`` 0.8.1, paths relative to ``site-packages/libp2p``) that behaviour was
verified. When py-libp2p is upgraded, re-check each one against the new source and delete
the ones that are no longer needed; nothing else in vouchnet should reach into libp2p
private attributes.

Workarounds:

(a) ``import libp2p`` resets the ``libp2p`` logger        -> :func:`import_libp2p`
(b) every dial waits ~250 ms with the default config      -> :func:`connection_config`
(c) failed dials are negatively cached for 60 s           -> :func:`forget_failed_dial`
(d) a stale TCP address in the peerstore blocks a new one -> :func:`connect_fresh`
(e) one libp2p module logs through the ROOT logger, which
    silently runs ``logging.basicConfig()``                -> applied at import
(f) the swarm dials every peer in its peerstore by itself -> :func:`disable_auto_dial`
(g) pubsub outbound queues and subscription channels hold
    32 entries and drop the rest silently                  -> :func:`size_pubsub_buffers`
(h) blacklisting a peer can crash the whole pubsub service -> :func:`safe_blacklist_teardown`
(i) pubsub counts no traffic (no per-RPC hook or counter)  -> :func:`count_pubsub_traffic`
(j) Yamux windows and 64 KiB frames slow content streams  -> :func:`window_for_response`,
                                                             :func:`whole_frames`
(k) a DHT provider lookup answers only once it is over    -> :func:`find_providers_early`
(m) an exception in any inbound stream stops the host     -> :func:`guard_inbound_streams`
(n) TCP listen sockets set SO_REUSEPORT: any same-uid
    process can share a node's port; a failed listen is
    ignored and the host runs without it                   -> :func:`exclusive_tcp_listeners`,
                                                             :func:`missing_listeners`,
                                                             :func:`shared_listen_sockets`
(o) a peer sending past the Yamux receive window is
    buffered without limit                                 -> :func:`enforce_receive_windows`
(s) DHT provider slots go first come, first served         -> :func:`rank_provider_records`
(t) inbound connections go first come, first served, and a
    closed one keeps its swarm slot for the node's life   -> :func:`gate_inbound_connections`,
                                                             :func:`connection_config_for`,
                                                             :func:`resource_manager_for`
(u) a peer whose connections all closed is not redialled
    until the swarm's own clean-up has run                -> :func:`redial_closed_connections`
(v) identify and identify-push let a peer decide how much
    the node stores about it (1 MiB messages, 1,000
    addresses of any length, protocols and signed-record
    addresses without limit, none per peer in total)       -> :func:`bound_identify_intake`,
                                                             :func:`trim_identify`
(w) a DHT provide reaches only the XOR-closest peers,
    which sybils can occupy, and a lookup asks no one once
    the local store holds any record for the key           -> :func:`announce_directly`,
                                                             :func:`ask_directly`

Each workaround lives in the submodule of the py-libp2p part it concerns (``logs``,
``dialing``, ``pubsub``, ``yamux``, ``kad``, ``guard``, ``connections``, ``tcp``, ``identify``); add a new one as a lettered section of the
module for its part (or a new module), and list it above. Importing this package first
imports libp2p through (a), so logging is fixed before any other libp2p module loads.
"""

from __future__ import annotations

from overlay.net.libp2p_compat.logs import import_libp2p  # first: it fixes libp2p's logging
from overlay.net.libp2p_compat.dialing import (
    connect_fresh,
    connection_config,
    disable_auto_dial,
    forget_failed_dial,
    redial_closed_connections,
)
from overlay.net.libp2p_compat.guard import StreamFailure, guard_inbound_streams
from overlay.net.libp2p_compat.connections import (
    InboundHook,
    connection_config_for,
    gate_inbound_connections,
    resource_manager_for,
)
from overlay.net.libp2p_compat.identify import IdentifyLimits, IdentifyTrim, bound_identify_intake, trim_identify
from overlay.net.libp2p_compat.kad import ProviderRank, announce_directly, ask_directly, find_providers_early, rank_provider_records
from overlay.net.libp2p_compat.pubsub import (
    Traffic,
    count_pubsub_traffic,
    safe_blacklist_teardown,
    size_pubsub_buffers,
)
from overlay.net.libp2p_compat.tcp import exclusive_tcp_listeners, missing_listeners, shared_listen_sockets
from overlay.net.libp2p_compat.yamux import (
    WRITE_SIZE,
    OnWindowViolation,
    ReceiveLimits,
    WindowViolation,
    enforce_receive_windows,
    whole_frames,
    window_for_response,
)

__all__ = [
    "import_libp2p",
    "ProviderRank",
    "rank_provider_records",
    "announce_directly",
    "ask_directly",
    "connection_config",
    "forget_failed_dial",
    "connect_fresh",
    "disable_auto_dial",
    "redial_closed_connections",
    "size_pubsub_buffers",
    "safe_blacklist_teardown",
    "count_pubsub_traffic",
    "Traffic",
    "window_for_response",
    "whole_frames",
    "WRITE_SIZE",
    "find_providers_early",
    "StreamFailure",
    "guard_inbound_streams",
    "InboundHook",
    "gate_inbound_connections",
    "connection_config_for",
    "resource_manager_for",
    "exclusive_tcp_listeners",
    "missing_listeners",
    "shared_listen_sockets",
    "enforce_receive_windows",
    "ReceiveLimits",
    "WindowViolation",
    "OnWindowViolation",
    "bound_identify_intake",
    "trim_identify",
    "IdentifyLimits",
    "IdentifyTrim",
]
