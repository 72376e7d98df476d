"""Ledger commands: audit, inspect, prove and export the tamper-evident reputation ledger."""
from __future__ import annotations

import base64
import datetime
import functools
import importlib
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn

import click

from overlay.cli.app import Ctx, emit_json, main
from trust.errors import VouchnetError

LEDGER_FILE = "ledger.db"
# Exit statuses of `ledger audit` and `ledger verify-proof`.
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _die(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _io_errors(fn: Callable) -> Callable:
    """A damaged database is an I/O error (exit 2); a closed pipe (`| head`) ends quietly."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except sqlite3.Error as exc:
            _die(f"cannot read the ledger: {exc}")
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(EXIT_OK)
    return wrapper


def ledger_path(obj: Ctx) -> Path:
    return obj.home.path / LEDGER_FILE


def _open(obj: Ctx):
    """The home's ledger, read-only; exit 2 if it is missing or not a ledger."""
    from trust.ledger import Ledger, LedgerOpenError
    path = ledger_path(obj)
    try:
        return Ledger(path, readonly=True, owner=home_peer_id(obj))
    except LedgerOpenError as exc:
        _die(str(exc))
    except OSError as exc:
        _die(f"cannot read {path}: {exc.strerror or exc}")


def home_peer_id(obj: Ctx) -> str | None:
    """This node's peer ID from its key file, without needing the passphrase (None if absent)."""
    from trust import keyfile
    key = obj.home.key_file
    if not key.exists():
        return None
    try:
        return keyfile.stored_peer_id(key)
    except VouchnetError as exc:
        _die(f"cannot read this node's identity: {exc}")


def _time(ts: Any) -> str:
    if type(ts) is not int:
        return repr(ts)[:24]
    try:
        dt = datetime.datetime.fromtimestamp(ts / 1000, datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return str(ts)
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{ts % 1000:03d}Z"


def _jsonable(v: Any) -> Any:
    """Bodies as JSON: byte strings become base64 text."""
    if isinstance(v, bytes):
        return base64.b64encode(v).decode("ascii")
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _short(v: Any, room: int = 24) -> str:
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>" if len(v) > 16 else v.hex()
    if isinstance(v, dict):
        return f"{{{len(v)} keys}}"
    if isinstance(v, list):
        return f"[{len(v)} items]"
    s = str(v)
    return s if len(s) <= room else s[:room - 1] + "…"


def summary(body: dict[str, Any] | None, width: int = 90) -> str:
    """A one-line digest of an entry body for tables."""
    if body is None:
        return "<undecodable body>"
    att = body.get("att")
    if isinstance(att, dict) and {"iss", "sub", "val", "seq"} <= set(att) and type(att["val"]) is int:
        text = (f"{_short(att['iss'], 16)} → {_short(att['sub'], 16)} = {att['val'] / 1_000_000:.3f} "
                f"(seq {att['seq']})")
    else:
        text = ", ".join(f"{k}={_short(v)}" for k, v in body.items())
    return text if len(text) <= width else text[:width - 1] + "…"


def _decoded(raw) -> tuple[dict | None, str | None]:
    from trust.ledger import decode_body
    try:
        return decode_body(raw.body), None
    except Exception as exc:  # a damaged row is shown, not fatal: `ledger audit` reports it
        return None, str(exc)


def _entry_json(raw, full: bool) -> dict[str, Any]:
    body, err = _decoded(raw)
    out: dict[str, Any] = {"idx": raw.idx, "ts": raw.ts, "kind": raw.kind, "body": _jsonable(body)}
    if err:
        out["body_error"] = err
    if full:
        out["body_cbor"] = _jsonable(raw.body) if isinstance(raw.body, bytes) else None
        out["leaf"] = _jsonable(raw.leaf) if isinstance(raw.leaf, bytes) else None
    return out


def _show(rows: list, as_json: bool, title: str) -> None:
    if as_json:
        emit_json([_entry_json(r, full=False) for r in rows])
        return
    from rich.console import Console
    from rich.table import Table
    table = Table("idx", "time (UTC)", "kind", "summary", title=title)
    for r in rows:
        body, _ = _decoded(r)
        table.add_row(str(r.idx), _time(r.ts), str(r.kind), summary(body))
    Console().print(table)


@main.group()
def ledger() -> None:
    """The tamper-evident reputation ledger (<home>/ledger.db).

    Every observation, rating, attestation and equivocation proof is an entry in an
    append-only log whose entries are the leaves of an RFC 9162 Merkle tree; signed tree heads
    commit to it. See docs/ledger.md.

    \b
    Examples:
      vouchnet --home ./alice ledger audit
      vouchnet --home ./alice ledger tail -n 5
      vouchnet --home ./alice ledger prove 17 > proof.json
      vouchnet ledger verify-proof proof.json
    """


@ledger.command("audit")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Processes for big ledgers and many signatures.")
@click.pass_obj
@_io_errors
def audit(obj: Ctx, as_json: bool, workers: int) -> None:
    """Re-check the whole ledger: exit 0 if it holds, 1 on any discrepancy, 2 if unreadable.

    Recomputes every leaf hash and the Merkle tree from the entries, checks every body is
    canonical CBOR, every signed head (signature, owner, root, consistency with the one before,
    increasing seq and time), every signed envelope inside entries, heads received from peers,
    equivocation proofs, and — when the reputation module provides it — that stored trust
    matches trust recomputed from the ledger. Opens the database read-only.

    \b
    Examples:
      vouchnet --home ./alice ledger audit
      vouchnet --home ./alice ledger audit --json | jq .problems
    """
    led = _open(obj)
    try:
        report = led.audit(workers=workers, trust_check=_trust_check())
    except VouchnetError as exc:
        _die(f"audit could not run: {exc}")
    except OSError as exc:
        _die(f"cannot read {led.path}: {exc.strerror or exc}")
    finally:
        led.close()
    if as_json:
        emit_json(report.to_dict())
    else:
        for p in report.problems:
            click.echo(f"FAIL {p.where}: {p.what}")
        for eq in report.equivocations_found:
            click.echo(f"finding: {eq.issuer} signed two different {eq.kind} records for one slot")
        status = "OK" if report.ok else f"FAILED with {len(report.problems)} problem(s)"
        click.echo(f"{status}: {report.entries} entries, {report.heads} signed heads, {report.peer_heads} peer heads, "
                   f"{report.envelopes} signatures checked in {report.seconds:.2f} s")
    sys.exit(EXIT_OK if report.ok else EXIT_FAIL)


def _trust_check():
    """trust.reputation.ledger_trust_check if that module provides it, else None.

    A module that exists but cannot be loaded is an audit problem: the audit must not say the
    stored trust was checked when it was not.
    """
    try:
        mod = importlib.import_module("trust.reputation")
    except ModuleNotFoundError as exc:
        if exc.name == "trust.reputation":
            return None
        return _broken(exc)
    except Exception as exc:
        return _broken(exc)
    fn = getattr(mod, "ledger_trust_check", None)
    return fn if callable(fn) else None


def _broken(exc: Exception):
    from trust.ledger import Problem

    def check(_ledger: Any) -> list[Problem]:
        return [Problem("trust check", f"trust.reputation could not be loaded: {type(exc).__name__}: {exc}")]
    return check


@ledger.command("show")
@click.option("--from", "start", type=click.IntRange(0), default=0, show_default=True, help="First entry index.")
@click.option("-n", "count", type=click.IntRange(1), default=20, show_default=True, help="How many entries.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (byte strings as base64).")
@click.pass_obj
@_io_errors
def show(obj: Ctx, start: int, count: int, as_json: bool) -> None:
    """Show entries from --from on.

    \b
    Examples:
      vouchnet --home ./alice ledger show --from 100 -n 10
      vouchnet --home ./alice ledger show --json
    """
    led = _open(obj)
    try:
        rows = list(led.raw_entries(start, start + count))
    finally:
        led.close()
    _show(rows, as_json, f"entries {start}..{start + len(rows) - 1}" if rows else "no entries")


@ledger.command("tail")
@click.option("-n", "count", type=click.IntRange(1), default=20, show_default=True, help="How many entries.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (byte strings as base64).")
@click.pass_obj
@_io_errors
def tail(obj: Ctx, count: int, as_json: bool) -> None:
    """Show the last entries.

    \b
    Examples:
      vouchnet --home ./alice ledger tail
      vouchnet --home ./alice ledger tail -n 5 --json
    """
    led = _open(obj)
    try:
        size = led.size
        rows = list(led.raw_entries(max(0, size - count), size))
    finally:
        led.close()
    _show(rows, as_json, f"last {len(rows)} of {size} entries")


@ledger.command("prove")
@click.argument("index", type=click.IntRange(0))
@click.pass_obj
@_io_errors
def prove(obj: Ctx, index: int) -> None:
    """Print a JSON proof that entry INDEX is in the ledger under its latest signed head.

    Anyone can check it with `vouchnet ledger verify-proof`, without this ledger.

    \b
    Example:
      vouchnet --home ./alice ledger prove 17 > proof.json
    """
    led = _open(obj)
    try:
        bundle = led.prove(index)
    finally:
        led.close()
    emit_json(bundle)


@ledger.command("verify-proof")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--issuer", default=None, help="Require the head to be signed by this peer ID.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_proof(file: Path, issuer: str | None, as_json: bool) -> None:
    """Check a proof bundle from `ledger prove` (FILE, or - for stdin): exit 0 if valid, 1 if not.

    Checks the tree head's signature (and its signer with --issuer), that the leaf data is
    the claimed entry with a canonical body, and the Merkle inclusion proof.

    \b
    Examples:
      vouchnet ledger verify-proof proof.json --issuer 12D3KooW...
      vouchnet --home ./alice ledger prove 17 | vouchnet ledger verify-proof -
    """
    from trust.ledger import decode_body, parse_leaf_data, verify_proof_bundle
    try:
        raw = sys.stdin.buffer.read(4 << 20) if str(file) == "-" else file.read_bytes()
    except OSError as exc:
        _die(f"cannot read {file}: {exc.strerror or exc}")
    try:
        bundle = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        _fail_proof(f"not a JSON proof bundle: {exc}", as_json)
    try:
        head, index = verify_proof_bundle(bundle, issuer=issuer)
        _, ts, kind, body = parse_leaf_data(base64.b64decode(bundle["leaf_data"]))
        entry = {"index": index, "ts": ts, "kind": kind, "body": _jsonable(decode_body(body))}
    except VouchnetError as exc:
        _fail_proof(str(exc), as_json)
    info = {"ok": True, "issuer": head.issuer, "head_seq": head.seq, "head_size": head.size,
            "root": head.root.hex(), "entry": entry}
    if as_json:
        emit_json(info)
    else:
        click.echo(f"OK entry {index} ({kind}, {_time(ts)}) is in the ledger of {head.issuer} "
                   f"under its head seq {head.seq} (size {head.size}, root {head.root.hex()[:16]}…)")
    sys.exit(EXIT_OK)


def _fail_proof(reason: str, as_json: bool) -> NoReturn:
    if as_json:
        emit_json({"ok": False, "reason": reason})
    else:
        click.echo(f"FAIL {reason}")
    sys.exit(EXIT_FAIL)


@ledger.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), default="-",
              show_default=True, help="Write here instead of stdout.")
@click.pass_obj
@_io_errors
def export(obj: Ctx, output: Path) -> None:
    """Write every entry as JSON lines: idx, ts, kind, body (bytes as base64), body_cbor, leaf.

    body_cbor is the exact stored body, so the leaf hashes and the tree can be recomputed from
    the export alone (see docs/ledger.md).

    \b
    Examples:
      vouchnet --home ./alice ledger export > ledger.jsonl
      vouchnet --home ./alice ledger export -o ledger.jsonl
    """
    led = _open(obj)
    out = sys.stdout if str(output) == "-" else open(output, "w", encoding="utf-8")
    try:
        for raw in led.raw_entries():
            out.write(json.dumps(_entry_json(raw, full=True), sort_keys=True) + "\n")
    finally:
        led.close()
        if out is not sys.stdout:
            out.close()
