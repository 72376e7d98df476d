"""Tests for overlay.wire.framing: the sans-IO codec and the async stream drivers."""

from __future__ import annotations

import struct

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from overlay.wire.framing import (
    HEADER_SIZE,
    FrameDecoder,
    FrameReader,
    FrameWriter,
    encode_frame,
    encode_frame_parts,
    read_frame,
    write_frame,
)
from trust.errors import DecodeError

MAX = 1024


def header(n: int) -> bytes:
    return struct.pack(">I", n)


# --------------------------------------------------------------------------- encode


def test_encode_layout():
    assert encode_frame(b"abc", MAX) == b"\x00\x00\x00\x03abc"
    assert encode_frame(b"", MAX) == b"\x00\x00\x00\x00"
    assert encode_frame(bytearray(b"x"), 1) == b"\x00\x00\x00\x01x"


def test_encode_rejects_oversize():
    encode_frame(b"a" * MAX, MAX)
    with pytest.raises(ValueError):
        encode_frame(b"a" * (MAX + 1), MAX)


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, True, "10"])
def test_bad_limits(bad):
    with pytest.raises((TypeError, ValueError)):
        FrameDecoder(bad)
    with pytest.raises((TypeError, ValueError)):
        encode_frame(b"", bad)


# --------------------------------------------------------------------------- decoder


def test_decode_several_frames_in_one_feed():
    d = FrameDecoder(MAX)
    data = encode_frame(b"one", MAX) + encode_frame(b"", MAX) + encode_frame(b"three", MAX)
    assert d.feed(data) == [b"one", b"", b"three"]
    assert d.at_boundary and d.buffered == 0
    d.close()


def test_decode_byte_by_byte():
    d = FrameDecoder(MAX)
    data = encode_frame(b"hello", MAX) + encode_frame(b"world!", MAX)
    out = []
    for i in range(len(data)):
        out += d.feed(data[i : i + 1])
    assert out == [b"hello", b"world!"]


def test_feed_empty_and_memoryview():
    d = FrameDecoder(MAX)
    assert d.feed(b"") == []
    assert d.feed(memoryview(encode_frame(b"mv", MAX))) == [b"mv"]
    assert d.feed(bytearray(encode_frame(b"ba", MAX))) == [b"ba"]


def test_frame_exactly_at_limit():
    d = FrameDecoder(8)
    assert d.feed(encode_frame(b"12345678", 8)) == [b"12345678"]
    d = FrameDecoder(0)
    assert d.feed(header(0)) == [b""]
    with pytest.raises(DecodeError):
        d.feed(header(1))


def test_oversized_header_rejected_before_payload():
    d = FrameDecoder(MAX)
    # Only the header arrives: no payload byte is needed to reject it.
    with pytest.raises(DecodeError, match="announces"):
        d.feed(header(MAX + 1))
    assert d.buffered == 0


def test_oversized_header_split_across_feeds():
    d = FrameDecoder(MAX)
    h = header(2**32 - 1)
    assert d.feed(h[:1]) == []
    assert d.feed(h[1:3]) == []
    assert d.buffered == 3
    with pytest.raises(DecodeError):
        d.feed(h[3:] + b"x" * 100)


def test_oversized_header_after_good_frames():
    d = FrameDecoder(MAX)
    with pytest.raises(DecodeError):
        d.feed(encode_frame(b"ok", MAX) + header(MAX + 1) + b"\x00" * 10)


def test_failed_decoder_stays_failed():
    d = FrameDecoder(MAX)
    with pytest.raises(DecodeError):
        d.feed(header(MAX + 1))
    with pytest.raises(DecodeError):
        d.feed(encode_frame(b"fine", MAX))
    with pytest.raises(DecodeError):
        d.close()


def test_never_buffers_more_than_limit_plus_header():
    limit = 100
    d = FrameDecoder(limit)
    # A frame of exactly the limit, delivered with a lot of following data in pieces.
    stream = b"".join(encode_frame(bytes([i]) * limit, limit) for i in range(20))
    for i in range(0, len(stream), 37):
        d.feed(stream[i : i + 37])
        assert d.buffered <= limit + HEADER_SIZE


def test_truncated_header_and_payload():
    d = FrameDecoder(MAX)
    assert d.feed(b"\x00\x00") == []
    assert not d.at_boundary
    with pytest.raises(DecodeError, match="header"):
        d.close()

    d = FrameDecoder(MAX)
    assert d.feed(header(10) + b"abc") == []
    assert not d.at_boundary
    with pytest.raises(DecodeError, match="3 of 10"):
        d.close()


def test_close_at_boundary_is_fine():
    d = FrameDecoder(MAX)
    d.close()
    d.feed(encode_frame(b"x", MAX))
    d.close()


# --------------------------------------------------------------------------- hypothesis

payloads = st.lists(st.binary(max_size=300), max_size=20)


@settings(max_examples=200, deadline=None)
@given(frames=payloads, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
def test_arbitrary_splits_give_same_frames(frames, cuts):
    limit = 300
    stream = b"".join(encode_frame(f, limit) for f in frames)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)])]
    d = FrameDecoder(limit)
    out = []
    for p in pieces:
        out += d.feed(p)
        assert d.buffered <= limit + HEADER_SIZE
    assert out == frames
    d.close()


@settings(max_examples=200, deadline=None)
@given(frames=payloads, cut=st.integers(min_value=1))
def test_truncated_stream_is_detected(frames, cut):
    stream = b"".join(encode_frame(f, 300) for f in frames)
    if not stream:
        return
    cut = cut % len(stream)  # strictly shorter than the full stream
    d = FrameDecoder(300)
    got = d.feed(stream[:cut])
    # Decoded frames are a prefix of the originals.
    assert got == frames[: len(got)]
    boundary = sum(HEADER_SIZE + len(f) for f in frames[: len(got)])
    if cut == boundary:
        d.close()  # the cut fell exactly between frames: a clean end
    else:
        with pytest.raises(DecodeError):
            d.close()


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2000), chunk=st.integers(min_value=1, max_value=64), limit=st.integers(0, 512))
def test_fuzz_only_decode_error(data, chunk, limit):
    d = FrameDecoder(limit)
    try:
        for i in range(0, len(data), chunk):
            for f in d.feed(data[i : i + chunk]):
                assert len(f) <= limit
            assert d.buffered <= limit + HEADER_SIZE
        d.close()
    except DecodeError:
        pass


# --------------------------------------------------------------------------- async drivers


class FakeStream:
    """Stream double: reads return at most `step` bytes; EOF raised as libp2p does."""

    def __init__(self, data: bytes = b"", step: int = 3, eof_style: str = "raise") -> None:
        self.data = bytearray(data)
        self.step = step
        self.eof_style = eof_style
        self.requests: list[int] = []
        self.written = bytearray()

    async def read(self, n: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        assert n is not None and n > 0
        self.requests.append(n)
        if not self.data:
            if self.eof_style == "raise":
                from libp2p.network.stream.exceptions import StreamEOF

                raise StreamEOF()
            return b""
        take = min(n, self.step)
        out = bytes(self.data[:take])
        del self.data[:take]
        return out

    async def write(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        self.written += data


def run(afn, *args):
    return trio.run(afn, *args)


@pytest.mark.parametrize("eof_style", ["raise", "empty"])
def test_read_frames_then_clean_eof(eof_style):
    async def main():
        s = FakeStream(encode_frame(b"hello", MAX) + encode_frame(b"", MAX) + encode_frame(b"x" * 50, MAX), 7, eof_style)
        assert await read_frame(s, MAX) == b"hello"
        assert await read_frame(s, MAX) == b""
        assert await read_frame(s, MAX) == b"x" * 50
        assert await read_frame(s, MAX) is None
        assert await read_frame(s, MAX) is None

    run(main)


@pytest.mark.parametrize("eof_style", ["raise", "empty"])
@pytest.mark.parametrize("data", [b"\x00", b"\x00\x00\x00", header(5), header(5) + b"abcd"])
def test_read_truncated_frame(eof_style, data):
    async def main():
        with pytest.raises(DecodeError, match="ended inside"):
            await read_frame(FakeStream(data, 2, eof_style), MAX)

    run(main)


def test_read_oversized_header_reads_no_payload():
    async def main():
        s = FakeStream(header(MAX + 1) + b"z" * 5000, 1000)
        with pytest.raises(DecodeError, match="announces"):
            await read_frame(s, MAX)
        # Only the 4 header bytes were requested and consumed.
        assert sum(min(r, 1000) for r in s.requests) == HEADER_SIZE
        assert len(s.data) == 5000

    run(main)


def test_read_never_requests_past_the_frame():
    async def main():
        s = FakeStream(encode_frame(b"a" * 10, MAX) + b"NEXT", 100)
        assert await read_frame(s, MAX) == b"a" * 10
        assert bytes(s.data) == b"NEXT"

    run(main)


def test_read_rejects_overlong_read():
    class Liar(FakeStream):
        async def read(self, n=None):
            return b"\x00" * (n + 1)

    async def main():
        with pytest.raises(DecodeError):
            await read_frame(Liar(), MAX)

    run(main)


def test_other_stream_errors_propagate():
    class Broken(FakeStream):
        async def read(self, n=None):
            raise ConnectionResetError("boom")

    async def main():
        with pytest.raises(ConnectionResetError):
            await read_frame(Broken(), MAX)

    run(main)


def test_write_then_read_roundtrip():
    async def main():
        s = FakeStream()
        await write_frame(s, b"payload")
        await write_frame(s, b"")
        with pytest.raises(ValueError):
            await write_frame(s, b"toolong", max_size=3)
        s.data = bytearray(s.written)
        assert await read_frame(s, MAX) == b"payload"
        assert await read_frame(s, MAX) == b""
        assert await read_frame(s, MAX) is None

    run(main)


def test_read_deadline_is_callers_job():
    class Silent(FakeStream):
        async def read(self, n=None):
            await trio.sleep_forever()

    async def main():
        with pytest.raises(trio.TooSlowError):
            with trio.fail_after(0.05):
                await read_frame(Silent(), MAX)

    run(main)


# --------------------------------------------------------------------------- read-ahead reader and parts


def test_encode_frame_parts_matches_encode_frame():
    parts = (b"ab", b"", bytearray(b"cde"), b"f" * 10)
    assert encode_frame_parts(parts, MAX) == encode_frame(b"".join(parts), MAX)
    assert encode_frame_parts((), MAX) == encode_frame(b"", MAX)
    with pytest.raises(ValueError):
        encode_frame_parts((b"a" * 600, b"b" * 600), MAX)


@pytest.mark.parametrize("eof_style", ["raise", "empty"])
@pytest.mark.parametrize("step", [1, 3, 7, 1000])
def test_frame_reader_reads_ahead_and_ends_cleanly(eof_style, step):
    async def main():
        frames = [b"hello", b"", b"x" * 50, b"y" * MAX]
        s = FakeStream(b"".join(encode_frame(f, MAX) for f in frames), step, eof_style)
        r = FrameReader(s, MAX, read_size=64)
        assert [await r.read() for _ in frames] == frames
        assert await r.read() is None
        assert await r.read() is None
        assert all(n == 64 for n in s.requests)  # every read asks for a whole read_size

    run(main)


@pytest.mark.parametrize("data", [b"\x00", header(5), header(5) + b"abcd", encode_frame(b"ok", MAX) + b"\x00\x00"])
def test_frame_reader_truncated_frame(data):
    async def main():
        r = FrameReader(FakeStream(data, 2), MAX)
        with pytest.raises(DecodeError, match="ended inside"):
            while True:
                await r.read()

    run(main)


def test_frame_reader_rejects_oversized_header_and_overlong_read():
    async def main():
        r = FrameReader(FakeStream(header(MAX + 1) + b"z" * 10, 100), MAX)
        with pytest.raises(DecodeError, match="announces"):
            await r.read()

        class Liar(FakeStream):
            async def read(self, n=None):
                return b"\x00" * (n + 1)

        with pytest.raises(DecodeError):
            await FrameReader(Liar(), MAX, read_size=16).read()

    run(main)


@given(st.lists(st.binary(max_size=300), max_size=12), st.integers(1, 100))
@settings(max_examples=200, deadline=None)
def test_frame_writer_writes_whole_pieces_of_the_same_frames(payloads, piece):
    async def main():
        s = FakeStream()
        writes: list[int] = []
        inner = s.write

        async def write(data: bytes) -> None:
            assert isinstance(data, bytes)
            writes.append(len(data))
            await inner(data)

        s.write = write  # type: ignore[method-assign]
        w = FrameWriter(s, MAX, piece)
        for p in payloads:
            await w.write((p[:7], p[7:]))
            assert len(s.written) % piece == 0  # only whole pieces so far
        await w.flush()
        await w.flush()  # nothing left: writes nothing
        assert bytes(s.written) == b"".join(encode_frame(p, MAX) for p in payloads)
        assert all(n == piece for n in writes[:-1]) and (not writes or 0 < writes[-1] <= piece)

    run(main)


def test_frame_writer_refuses_oversized_frame_and_bad_piece():
    async def main():
        s = FakeStream()
        w = FrameWriter(s, MAX, 10)
        await w.write((b"ok",))
        with pytest.raises(ValueError):
            await w.write((b"a" * MAX, b"b"))
        await w.flush()
        assert bytes(s.written) == encode_frame(b"ok", MAX)  # the refused frame left no trace

    run(main)
    with pytest.raises(ValueError):
        FrameWriter(FakeStream(), MAX, 0)
