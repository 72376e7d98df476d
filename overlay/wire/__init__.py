"""The content protocol, sans-IO (``protocol``: messages, exchanges, limits; ``framing``: length-
prefixed frames), and the thin trio driver that runs it over a libp2p stream (``streams``).

Imports nothing from ``net``, ``services``, ``node`` or ``cli``."""
