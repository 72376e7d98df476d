"""Tests for overlay.net.host and overlay.net.libp2p_compat.

The ``network`` tests start real py-libp2p hosts on 127.0.0.1 (TCP + Noise + Yamux). Each
runs under trio.run with a trio.fail_after bound, and every host is closed on exit.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
import trio

from overlay.wire.framing import read_frame, write_frame
from overlay.net.host import (
    build_host,
    keypair_from_seed,
    parse_peer_multiaddr,
    peer_id_from_seed,
    running_host,
)
from overlay.net.libp2p_compat import connect_fresh, connection_config, forget_failed_dial
from trust.errors import ConfigError

import libp2p  # noqa: E402  (after overlay.net.libp2p_compat: logging already fixed)
import multiaddr
from libp2p.network.exceptions import SwarmException
from libp2p.peer.peerinfo import PeerInfo
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureSession, InsecureTransport
from libp2p.security.noise.io import NoiseTransportReadWriter
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

PROTO = "/vouchnet/test/echo/1.0.0"
LOCAL = ["/ip4/127.0.0.1/tcp/0"]
TIMEOUT = 15
SEED_A = bytes(range(32))
SEED_B = bytes(range(32, 64))
SEED_P = b"\x09" * 32
SEED_D = b"\x0a" * 32


def run(afn):
    """Run an async test body under trio with an overall deadline."""

    async def bounded():
        with trio.fail_after(TIMEOUT):
            await afn()

    trio.run(bounded)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def echo_handler(stream):
    """Read frames and send each back reversed until the peer closes."""
    try:
        while (frame := await read_frame(stream, 1 << 16)) is not None:
            await write_frame(stream, frame[::-1])
    finally:
        await stream.close()


def security_of(host, peer_id):
    conn = host.get_network().connections[peer_id][0]
    return conn.muxed_conn, conn.muxed_conn.secured_conn


# --------------------------------------------------------------------------- no network


def test_peer_id_from_seed_is_deterministic():
    a = peer_id_from_seed(SEED_A)
    assert a == peer_id_from_seed(SEED_A)
    assert a.startswith("12D3KooW")
    assert a != peer_id_from_seed(SEED_B)


@pytest.mark.parametrize("seed", [b"", b"\x01" * 31, b"\x01" * 33, "x" * 32, None])
def test_bad_seed_rejected(seed):
    # b"" matters: libp2p's Ed25519PrivateKey.new(b"") would silently make a RANDOM key.
    with pytest.raises(ValueError):
        keypair_from_seed(seed)
    with pytest.raises(ValueError):
        build_host(seed)


def test_build_host_refuses_stack_overrides():
    with pytest.raises(TypeError):
        build_host(SEED_A, sec_opt={})


def test_build_host_stack_is_noise_yamux_tcp_only():
    host = build_host(SEED_A)
    upgrader = host.get_network().upgrader
    assert set(upgrader.security_multistream.transports) == {"/noise"}
    assert set(upgrader.muxer_multistream.transports) == {YAMUX_PROTOCOL_ID}
    assert str(host.get_id()) == peer_id_from_seed(SEED_A)
    assert host.get_network().connection_config.max_connections_per_peer == 1


def test_parse_peer_multiaddr_ok():
    pid = peer_id_from_seed(SEED_A)
    info = parse_peer_multiaddr(f"/ip4/127.0.0.1/tcp/4001/p2p/{pid}")
    assert str(info.peer_id) == pid
    assert [str(a) for a in info.addrs] == ["/ip4/127.0.0.1/tcp/4001"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "not a multiaddr",
        "/ip4/127.0.0.1/tcp/4001",  # no /p2p/
        "/ip4/999.0.0.1/tcp/4001/p2p/12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB",
        "/ip4/127.0.0.1/tcp/4001/p2p/notapeerid",
        "/p2p/12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB",  # no address
        "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB/tcp/5",
    ],
)
def test_parse_peer_multiaddr_errors(text):
    with pytest.raises(ConfigError):
        parse_peer_multiaddr(text)


def test_import_keeps_our_libp2p_log_level():
    """Workaround (a): a level set before importing libp2p survives the import."""
    code = (
        "import logging; logging.getLogger('libp2p').setLevel(logging.ERROR)\n"
        "import overlay.net.host\n"
        "lg = logging.getLogger('libp2p'); assert lg.level == logging.ERROR, lg.level\n"
        "assert lg.propagate\n"
        "assert not logging.getLogger().handlers\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "LIBP2P_DEBUG"}
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30, env=env)


# --------------------------------------------------------------------------- network


@pytest.mark.network
def test_two_hosts_exchange_frame_over_noise_yamux():
    async def main():
        async with running_host(SEED_A, LOCAL) as a, running_host(SEED_B, LOCAL) as b:
            assert str(a.get_id()) == peer_id_from_seed(SEED_A)
            assert str(b.get_id()) == peer_id_from_seed(SEED_B)
            a.set_stream_handler(PROTO, echo_handler)

            addr = str(a.get_addrs()[0])
            assert addr.startswith("/ip4/127.0.0.1/tcp/") and addr.endswith("/p2p/" + peer_id_from_seed(SEED_A))
            info = parse_peer_multiaddr(addr)
            t0 = time.perf_counter()
            await b.connect(info)
            assert time.perf_counter() - t0 < 0.2  # no 250 ms happy-eyeballs wait (compat (b))

            muxed, secured = security_of(b, info.peer_id)
            assert isinstance(muxed, Yamux)
            assert isinstance(secured.conn, NoiseTransportReadWriter)  # Noise-encrypted session
            assert secured.get_remote_peer() == a.get_id()

            stream = await b.new_stream(info.peer_id, [PROTO])
            await write_frame(stream, b"hello vouchnet")
            assert await read_frame(stream, 1 << 16) == b"tenhcuov olleh"
            await write_frame(stream, b"")
            assert await read_frame(stream, 1 << 16) == b""
            await stream.close()
            assert await read_frame(stream, 1 << 16) is None  # clean EOF after handler closes

    run(main)


def plaintext_only_host(seed: bytes):
    kp = keypair_from_seed(seed)
    return libp2p.new_host(
        key_pair=kp,
        sec_opt={PLAINTEXT_PROTOCOL_ID: InsecureTransport(kp)},
        muxer_opt={YAMUX_PROTOCOL_ID: Yamux},
        connection_config=connection_config(),
    )


@pytest.mark.network
def test_plaintext_peer_refused_but_default_host_accepts_it():
    async def main():
        plain = plaintext_only_host(SEED_P)
        default = libp2p.new_host(key_pair=keypair_from_seed(SEED_D), connection_config=connection_config())
        opened: list[str] = []

        async def recording_handler(stream):
            opened.append(str(stream.muxed_conn.peer_id))
            await echo_handler(stream)

        async with (
            running_host(SEED_A, LOCAL) as ours,
            plain.run([multiaddr.Multiaddr(a) for a in LOCAL]),
            default.run([multiaddr.Multiaddr(a) for a in LOCAL]),
        ):
            try:
                ours.set_stream_handler(PROTO, recording_handler)
                default.set_stream_handler(PROTO, recording_handler)
                ours_info = parse_peer_multiaddr(str(ours.get_addrs()[0]))
                default_info = parse_peer_multiaddr(str(default.get_addrs()[0]))

                for h in (plain, ours):  # failing dials: no retries, keeps the test short
                    h.get_network().retry_config.max_retries = 0
                # Refused: the plaintext-only peer cannot connect to our Noise-only host ...
                with pytest.raises(SwarmException):
                    await plain.connect(ours_info)
                with pytest.raises(SwarmException):
                    await plain.new_stream(ours_info.peer_id, [PROTO])
                assert not ours.get_network().connections.get(plain.get_id())
                # ... nor can our host connect to it.
                with pytest.raises(SwarmException):
                    await ours.connect(parse_peer_multiaddr(str(plain.get_addrs()[0])))
                assert not ours.get_network().connections.get(plain.get_id())
                assert opened == []

                # Control: a host with py-libp2p's default security options accepts it.
                await plain.connect(default_info)
                _, secured = security_of(default, plain.get_id())
                assert isinstance(secured, InsecureSession)
                stream = await plain.new_stream(default_info.peer_id, [PROTO])
                await write_frame(stream, b"abc")
                assert await read_frame(stream, 1 << 16) == b"cba"
                await stream.close()
                assert opened == [str(plain.get_id())]
            finally:
                await plain.close()
                await default.close()

    run(main)


@pytest.mark.network
def test_dial_with_wrong_peer_id_fails():
    async def main():
        async with running_host(SEED_A, LOCAL) as a, running_host(SEED_B, LOCAL) as b:
            a.set_stream_handler(PROTO, echo_handler)
            transport_addr = str(a.get_addrs()[0]).rsplit("/p2p/", 1)[0]
            impostor_id = peer_id_from_seed(b"\x77" * 32)  # a key nobody here holds
            b.get_network().retry_config.max_retries = 0
            wrong = parse_peer_multiaddr(f"{transport_addr}/p2p/{impostor_id}")
            with pytest.raises(SwarmException):
                await b.connect(wrong)
            assert not b.get_network().connections.get(wrong.peer_id)
            assert not b.get_network().connections.get(a.get_id())
            # The right ID at the same address works.
            await connect_fresh(b, parse_peer_multiaddr(str(a.get_addrs()[0])))
            assert b.get_network().connections.get(a.get_id())

    run(main)


@pytest.mark.network
def test_stale_address_and_negative_cache_workarounds():
    """Compat (c) and (d): after a failed dial to a stale address, plain connect() with the
    right address fails (negative cache, then the stale address is dialed again);
    connect_fresh() succeeds."""

    async def main():
        async with running_host(SEED_A, LOCAL) as a, running_host(SEED_B, LOCAL) as b:
            good = parse_peer_multiaddr(str(a.get_addrs()[0]))
            stale = PeerInfo(good.peer_id, [multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{free_port()}")])
            b.get_network().retry_config.max_retries = 0  # keep the failing dials short

            with pytest.raises(SwarmException):
                await b.connect(stale)
            with pytest.raises(SwarmException, match="negative cache"):
                await b.connect(good)  # (c): refused at once, not even dialed
            forget_failed_dial(b, good.peer_id)
            with pytest.raises(SwarmException):
                await b.connect(good)  # (d): the stale address is the one dialed
            await connect_fresh(b, good)
            assert b.get_network().connections.get(good.peer_id)

    run(main)


@pytest.mark.network
def test_peer_whose_connections_closed_is_redialled():
    """Compat (u): a connection that reports closed but whose swarm clean-up has not run yet
    (CI under load: Yamux's close can take seconds) made every new stream to that peer fail
    with "No valid connections available"; the stream is now opened on a fresh dial."""

    async def main():
        async with running_host(SEED_A, LOCAL) as a, running_host(SEED_B, LOCAL) as b:
            a.set_stream_handler(PROTO, echo_handler)
            info = parse_peer_multiaddr(str(a.get_addrs()[0]))
            await b.connect(info)
            swarm = b.get_network()
            (stale,) = swarm.get_connections(info.peer_id)
            stale.event_closed.set()  # what SwarmConn.close() does first ...
            await stale.muxed_conn.close()  # ... and its clean-up (remove_conn) comes later
            assert swarm.get_connections(info.peer_id) == [stale]

            with pytest.raises(SwarmException, match="No valid connections"):
                await type(swarm).new_stream(swarm, info.peer_id)  # py-libp2p's own method
            stream = await b.new_stream(info.peer_id, [PROTO])
            await write_frame(stream, b"again")
            assert await read_frame(stream, 1 << 16) == b"niaga"
            await stream.close()
            assert stale not in swarm.get_connections(info.peer_id)

    run(main)


@pytest.mark.network
def test_no_auto_dial_unless_asked():
    """Compat (f): a peer address in the peerstore is not dialed by itself; with
    auto_dial=True (py-libp2p's behaviour) it is, which shows the check can fail."""

    async def main():
        async with running_host(SEED_A, LOCAL) as a:
            info = parse_peer_multiaddr(str(a.get_addrs()[0]))
            for auto_dial in (False, True):
                seed = SEED_B if auto_dial else SEED_D
                host = build_host(seed, auto_dial=auto_dial)
                host.get_peerstore().add_addrs(info.peer_id, info.addrs, 3600)
                async with host.run([multiaddr.Multiaddr(x) for x in LOCAL]):
                    try:
                        with trio.move_on_after(0.3 if not auto_dial else 5):
                            while not host.get_network().connections.get(info.peer_id):
                                await trio.sleep(0.02)
                        assert bool(host.get_network().connections.get(info.peer_id)) is auto_dial
                    finally:
                        await host.close()

    run(main)


@pytest.mark.network
def test_running_host_passes_exceptions_and_cancellation_through():
    async def main():
        with pytest.raises(KeyError):
            async with running_host(SEED_A, LOCAL):
                raise KeyError("from the body")  # not wrapped in ExceptionGroups
        with pytest.raises(trio.TooSlowError):
            with trio.fail_after(0.05):
                async with running_host(SEED_A, LOCAL):
                    await trio.sleep(10)
        # The port was released and the same identity can run again.
        async with running_host(SEED_A, LOCAL) as again:
            assert str(again.get_id()) == peer_id_from_seed(SEED_A)

    run(main)


# Every exception type a py-libp2p stream (or a handler's bug) can raise, injected below into
# every protocol handler the host has: each must end its own stream only (libp2p_compat (m)).
def _stream_exceptions():
    from libp2p.io.exceptions import DecryptionFailedException, IncompleteReadError, MessageTooLarge
    from libp2p.network.stream.exceptions import StreamClosed, StreamEOF, StreamError, StreamReset
    from libp2p.protocol_muxer.exceptions import MultiselectError
    from libp2p.stream_muxer.exceptions import (
        MuxedConnUnavailable,
        MuxedStreamClosed,
        MuxedStreamEOF,
        MuxedStreamError,
        MuxedStreamReset,
    )

    return [
        StreamReset("injected"), StreamEOF("injected"), StreamClosed("injected"), StreamError("injected"),
        MuxedStreamReset("injected"), MuxedStreamEOF("injected"), MuxedStreamClosed("injected"),
        MuxedStreamError("injected"), MuxedConnUnavailable("injected"), IncompleteReadError("injected"),
        MessageTooLarge("injected"), DecryptionFailedException("injected"), MultiselectError("injected"),
        trio.TooSlowError(), trio.BrokenResourceError("injected"), trio.ClosedResourceError("injected"),
        ConnectionResetError("injected"), OSError("injected"), EOFError("injected"), ValueError("injected"),
        KeyError("injected"), RecursionError("injected"), MemoryError("injected"),
        ExceptionGroup("injected", [StreamReset("a"), ValueError("b")]),
    ]


@pytest.mark.network
def test_an_exception_in_any_handler_ends_that_stream_only():
    failures: list[tuple[str, BaseException]] = []

    async def main():
        async with running_host(SEED_A, LOCAL, on_stream_failure=lambda p, e: failures.append((p, e))) as a, \
                running_host(SEED_B, LOCAL) as b, running_host(SEED_P, LOCAL) as c:
            a.set_stream_handler(PROTO, echo_handler)
            handlers = a.get_mux().handlers
            protocols = sorted(str(p) for p in handlers if p is not None)
            assert PROTO in protocols and len(protocols) >= 3  # ours + identify + ping at least
            info = parse_peer_multiaddr(str(a.get_addrs()[0]))
            await b.connect(info)
            originals = dict(handlers)
            injected = _stream_exceptions()
            for exc in injected:
                for proto in protocols:
                    async def boom(stream, exc=exc):
                        await stream.read(1)
                        raise exc

                    handlers[proto] = boom  # type: ignore[index]
                    stream = await b.new_stream(info.peer_id, [proto])
                    await stream.write(b"x")
                    try:  # the guard resets the stream: EOF or reset, never a hang
                        await stream.read(1)
                    except Exception:  # noqa: BLE001 - any end of stream is fine here
                        pass
                    handlers.update(originals)
            # The host still serves, over the old connection and to a new peer.
            for peer in (b, c):
                await peer.connect(info)
                stream = await peer.new_stream(info.peer_id, [PROTO])
                await write_frame(stream, b"still here")
                assert await read_frame(stream, 1 << 16) == b"ereh llits"
                await stream.close()
            return len(injected) * len(protocols)

    def bounded():
        async def inner():
            with trio.fail_after(60):
                return await main()
        return trio.run(inner)

    expected = bounded()
    # Each injected failure was seen by the guard, with its protocol and its own type.
    assert len(failures) == expected
    assert {type(e) for _, e in failures} == {type(e) for e in _stream_exceptions()}
