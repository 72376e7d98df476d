"""The daemon: ``daemon`` (``Node``: wiring and serving), ``fetch`` (verified multi-provider
download), ``control`` (the Unix control socket) and ``operations`` (the table of control
operations). Never imports ``overlay.cli`` or ``overlay.sim``."""
