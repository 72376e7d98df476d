"""What faces py-libp2p: the host (``host``, ``listen``), GossipSub (``gossip``), mDNS dialling
(``local_discovery``), the resource limits enforced on connections and streams (``limits``,
``stream_limits``) and the one place for py-libp2p workarounds (``libp2p_compat``)."""
