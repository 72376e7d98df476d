"""The local control interface: a Unix socket (mode 0600) in the home folder.

Protocol (documented in docs/control.md): the client sends ONE request, a JSON object on one
line (at most 64 KiB), e.g. ``{"op": "status"}``. The node answers with JSON lines: zero or
more events (``{"event": "progress", ...}``) and then exactly one final line, either
``{"ok": true, "result": {...}}`` or ``{"ok": false, "error": "message"}``, and closes.
Ops: status, peers, fetch, share, stop (see docs/control.md for their fields). List ops answer
in pages (``limit``/``after`` in, ``next`` out; overlay/node/paging.py), and no answer line is ever
longer than :data:`MAX_RESPONSE_LINE`: one that would be is replaced by an error.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import struct
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

from trust.errors import VouchnetError

log = logging.getLogger("vouchnet.control")

SOCKET_NAME = "node.sock"
MAX_REQUEST = 64 * 1024
MAX_RESPONSE_LINE = 4 * 1024 * 1024

Handler = Callable[[dict[str, Any], Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[Any]]


class NodeNotRunning(VouchnetError):
    pass


class ControlError(VouchnetError):
    pass


# -- server (trio) ---------------------------------------------------------------------------

def _peer_uid(sock: Any) -> int | None:
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", creds)[1]
    except (OSError, AttributeError):
        return None


def claim_socket_path(path: Path) -> None:
    """Remove a stale socket; refuse if a live node already answers on it."""
    if not path.exists():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()  # stale: left by a node that died
        return
    finally:
        probe.close()
    raise ControlError(f"a node is already running with this home folder (socket {path})")


async def serve_control(path: Path, handlers: dict[str, Handler], task_status: Any = None) -> None:
    import trio

    if len(str(path).encode()) > 100:
        raise ControlError(f"control socket path {path} is too long for a Unix socket; use a shorter --home")
    claim_socket_path(path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is created 0600: only its owner may drive the node
    try:
        await sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(16)
    listener = trio.SocketListener(sock)
    if task_status is not None:
        task_status.started()
    try:
        await trio.serve_listeners(lambda stream: _handle(stream, handlers), [listener])
    finally:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


async def _handle(stream: Any, handlers: dict[str, Handler]) -> None:
    import trio

    async def send(obj: dict[str, Any]) -> None:
        await stream.send_all((json.dumps(obj) + "\n").encode())

    try:
        uid = _peer_uid(stream.socket)
        if uid is not None and uid != os.getuid():
            await send({"ok": False, "error": "permission denied"})
            return
        buf = b""
        with trio.move_on_after(10):
            while b"\n" not in buf and len(buf) <= MAX_REQUEST:
                data = await stream.receive_some(8192)
                if not data:
                    break
                buf += data
        line = buf.split(b"\n", 1)[0]
        if len(line) > MAX_REQUEST:
            await send({"ok": False, "error": f"request larger than {MAX_REQUEST} bytes"})
            return
        try:
            req = json.loads(line)
        except RecursionError:  # json nests by recursion: a deep "[[[[..." is hostile, not a bug here
            await send({"ok": False, "error": "request is nested too deeply"})
            return
        except ValueError:
            await send({"ok": False, "error": "request is not a JSON object"})
            return
        if not isinstance(req, dict) or not isinstance(req.get("op"), str):
            await send({"ok": False, "error": "request must be an object with an 'op' string"})
            return
        handler = handlers.get(req["op"])
        if handler is None:
            await send({"ok": False, "error": f"unknown op {req['op'][:40]!r}; known: {', '.join(sorted(handlers))}"})
            return
        try:
            result = await handler(req, send)
        except VouchnetError as exc:
            await send({"ok": False, "error": str(exc)})
            return
        except (KeyError, TypeError, ValueError) as exc:
            await send({"ok": False, "error": f"bad request: {exc}"})
            return
        answer = json.dumps({"ok": True, "result": result})
        if len(answer) + 1 > MAX_RESPONSE_LINE:  # the client could not read it: say so on one line
            log.warning("control answer to %r too large (%d bytes)", req["op"][:40], len(answer))
            await send({"ok": False, "error": f"the answer is larger than {MAX_RESPONSE_LINE} bytes; "
                                              "ask for fewer rows (limit) or a narrower request"})
            return
        await stream.send_all((answer + "\n").encode())
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the CLI went away (e.g. Ctrl-C); nothing to answer
    except Exception:
        log.exception("control request failed")
        try:
            await send({"ok": False, "error": "internal error (see the node's log)"})
        except Exception:  # nosec B110 - the client is gone; the error is already logged
            pass
    finally:
        await stream.aclose()


# -- client (blocking; the CLI needs no event loop) -------------------------------------------

def socket_path(home: Path) -> Path:
    return Path(home) / SOCKET_NAME


def node_running(home: Path) -> bool:
    try:
        with _connect(home, 2.0):
            return True
    except NodeNotRunning:
        return False


def _connect(home: Path, timeout: float) -> socket.socket:
    path = socket_path(home)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        s.close()
        raise NodeNotRunning(f"no node is running for {home} (start one with 'vouchnet --home {home} node run')") from None
    except OSError as exc:
        s.close()
        raise NodeNotRunning(f"cannot reach the node at {path}: {exc.strerror}") from None
    return s


def request(home: Path, req: dict[str, Any], timeout: float = 30.0) -> Iterator[dict[str, Any]]:
    """Send one request; yield every line the node answers (events, then the final line)."""
    with _connect(home, timeout) as s:
        s.sendall((json.dumps(req) + "\n").encode())
        f = s.makefile("rb")
        while True:
            try:
                line = f.readline(MAX_RESPONSE_LINE)
            except socket.timeout:
                raise ControlError(f"the node did not answer within {timeout:.0f} s") from None
            if not line:
                raise ControlError("the node closed the control connection without an answer")
            if not line.endswith(b"\n") and len(line) >= MAX_RESPONSE_LINE:
                raise ControlError(f"the node's answer is longer than {MAX_RESPONSE_LINE} bytes; "
                                   "ask for fewer rows (--limit)")
            try:
                msg = json.loads(line)
            except (ValueError, RecursionError):
                raise ControlError("the node's answer is not valid JSON") from None
            if not isinstance(msg, dict):
                raise ControlError("the node's answer is not a JSON object")
            yield msg
            if "ok" in msg:
                return


def call(home: Path, req: dict[str, Any], timeout: float = 30.0,
         on_event: Callable[[dict[str, Any]], None] | None = None) -> Any:
    for msg in request(home, req, timeout):
        if "ok" not in msg:
            if on_event:
                on_event(msg)
            continue
        if not msg["ok"]:
            raise ControlError(msg.get("error", "the node refused the request"))
        return msg.get("result")
    raise ControlError("no answer from the node")


def call_pages(home: Path, req: dict[str, Any], field: str, timeout: float = 30.0) -> list[Any]:
    """Every row of a paged list op (see overlay/node/paging.py), following ``next`` from page to page."""
    from overlay.node.paging import MAX_LIMIT, follow

    try:
        return follow(lambda after: call(home, {**req, "limit": req.get("limit") or MAX_LIMIT, "after": after},
                                         timeout), field, req.get("after"))
    except ControlError:
        raise
    except VouchnetError as exc:  # the pages did not add up: as much the node's fault as a bad answer
        raise ControlError(str(exc)) from None
