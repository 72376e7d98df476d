"""Receive-window accounting of libp2p_compat (o), without a network: the pure limits, and the
stream buffers that apply them (on a stand-in for py-libp2p's Yamux connection)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from overlay.net.libp2p_compat.yamux import ReceiveLimits, WindowViolation, _ConnectionGuard, _Refused, _StreamBuffers

KIB = 1024


def test_data_within_the_window_and_the_connection_cap_is_taken():
    limits = ReceiveLimits(max_buffered=1024 * KIB, max_inbound_streams=4)
    assert limits.check_data(1, 256 * KIB, 256 * KIB, 0) is None  # exactly the window
    assert limits.check_data(1, 256 * KIB, 64 * KIB, 960 * KIB) is None  # exactly the cap


def test_one_byte_past_the_window_is_a_window_violation():
    reason, detail = ReceiveLimits().check_data(3, 100, 101, 0)
    assert reason == "window"
    assert "stream 3" in detail and "1 past it" in detail


def test_data_on_an_exhausted_window_is_a_violation_even_when_little():
    assert ReceiveLimits().check_data(3, 0, 1, 0)[0] == "window"


def test_too_much_unread_on_one_connection_is_over_the_cap():
    limits = ReceiveLimits(max_buffered=1024 * KIB)
    reason, detail = limits.check_data(5, 256 * KIB, 64 * KIB, 1000 * KIB)
    assert reason == "buffered" and str(1024 * KIB) in detail


def test_data_for_an_unknown_stream_is_only_held_to_the_connection_cap():
    assert ReceiveLimits().check_data(7, None, 64 * KIB, 0) is None


def test_the_peer_may_open_streams_up_to_the_limit():
    limits = ReceiveLimits(max_inbound_streams=2)
    assert limits.check_stream(2, 1) is None
    assert limits.check_stream(4, 2)[0] == "streams"


def test_only_a_window_violation_proves_misbehaviour():
    assert WindowViolation("p", "window", "").proves_misbehaviour
    assert not WindowViolation("p", "buffered", "").proves_misbehaviour
    assert not WindowViolation("p", "streams", "").proves_misbehaviour


class _Flag:
    def __init__(self) -> None:
        self.value = False

    def set(self) -> None:
        self.value = True


def _conn(limits: ReceiveLimits) -> tuple[SimpleNamespace, _ConnectionGuard]:
    conn = SimpleNamespace(peer_id="12D3KooWpeer", streams={}, stream_buffers={}, event_shutting_down=_Flag())
    guard = _ConnectionGuard(conn, limits)
    conn.stream_buffers = _StreamBuffers(guard, {})
    return conn, guard


def _open(conn: SimpleNamespace, sid: int, window: int, *, ours: bool = False) -> None:
    conn.streams[sid] = SimpleNamespace(recv_window=window, is_initiator=ours)
    conn.stream_buffers[sid] = bytearray()  # as py-libp2p creates a stream's buffer


def test_a_payload_past_the_window_is_refused_not_buffered_and_ends_the_connection():
    conn, guard = _conn(ReceiveLimits())
    _open(conn, 2, 10)
    conn.stream_buffers[2].extend(b"x" * 10)
    conn.streams[2].recv_window = 0  # py-libp2p subtracts what it buffered
    with pytest.raises(_Refused):
        conn.stream_buffers[2].extend(b"y")
    assert bytes(conn.stream_buffers[2]) == b"x" * 10
    assert guard.violation is not None and guard.violation.reason == "window"
    assert guard.violation.peer == "12D3KooWpeer"
    assert conn.event_shutting_down.value
    with pytest.raises(_Refused):  # nothing more after a violation, on any stream
        _open(conn, 4, 100)


def test_the_sum_over_streams_is_capped():
    conn, guard = _conn(ReceiveLimits(max_buffered=25))
    for sid in (2, 4, 6):
        _open(conn, sid, 100)
    conn.stream_buffers[2].extend(b"a" * 10)
    conn.stream_buffers[4].extend(b"b" * 10)
    with pytest.raises(_Refused):
        conn.stream_buffers[6].extend(b"c" * 10)
    assert guard.violation.reason == "buffered"
    assert len(conn.stream_buffers[6]) == 0


def test_read_data_no_longer_counts():
    conn, guard = _conn(ReceiveLimits(max_buffered=20))
    _open(conn, 2, 100)
    buf = conn.stream_buffers[2]
    buf.extend(b"a" * 20)
    del buf[:15]  # as YamuxStream.read drains it
    buf.extend(b"b" * 15)
    assert guard.violation is None and bytes(buf) == b"a" * 5 + b"b" * 15


def test_the_peers_streams_are_counted_not_ours():
    conn, guard = _conn(ReceiveLimits(max_inbound_streams=2))
    _open(conn, 1, 100, ours=True)
    _open(conn, 3, 100, ours=True)
    _open(conn, 2, 100)
    _open(conn, 4, 100)
    assert guard.violation is None
    with pytest.raises(_Refused):
        _open(conn, 6, 100)
    assert guard.violation.reason == "streams"
