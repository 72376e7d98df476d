"""Commands that work on the home folder alone: init, id, share, verify, ls, export."""
from __future__ import annotations

import mimetypes
import sys
from pathlib import Path

import click

from overlay.cli.app import Ctx, emit_json, fail, main, progress
from overlay.config import DEFAULT_CONFIG, load_config
from trust import keyfile
from trust.errors import DecodeError
from trust.identity import Identity
from trust.manifest import parse_cid


@main.command()
@click.option("--passphrase-file", "init_pass", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Protect the key with the passphrase in this file (Argon2id + SecretBox).")
@click.option("--force", is_flag=True, help="Replace an existing identity (the old key is lost).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable output.")
@click.pass_obj
def init(obj: Ctx, init_pass: Path | None, force: bool, as_json: bool) -> None:
    """Create the home folder, a new Ed25519 identity (mode 0600) and a default config.

    \b
    Examples:
      vouchnet --home ./alice init
      vouchnet --home ./alice init --passphrase-file ~/.alice-pass
    """
    home = obj.home
    passphrase = keyfile.read_passphrase_file(init_pass or obj.passphrase_file) if (init_pass or obj.passphrase_file) else None
    if home.key_file.exists() and not force:
        fail(f"an identity already exists at {home.key_file}; pass --force to replace it (the old key is lost)")
    home.create()
    identity = Identity.generate()
    keyfile.save_identity(home.key_file, identity, passphrase, overwrite=force)
    if not home.config_file.exists():
        from trust.atomic import atomic_write
        atomic_write(home.config_file, DEFAULT_CONFIG.encode(), 0o600)
    if as_json:
        emit_json({"peer_id": identity.peer_id, "home": str(home.path), "protected": passphrase is not None})
    else:
        click.echo(f"Created identity {identity.peer_id}")
        click.echo(f"  key file: {home.key_file} (mode 0600{', passphrase-protected' if passphrase else ''})")
        click.echo(f"  config:   {home.config_file}")


@main.command("id")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable output.")
@click.pass_obj
def id_(obj: Ctx, as_json: bool) -> None:
    """Print this node's peer ID and public key.

    \b
    Example:
      vouchnet --home ./alice id --json
    """
    identity = obj.identity()
    info = {"peer_id": identity.peer_id, "public_key": identity.public_key.hex(),
            "protected": keyfile.is_protected(obj.home.key_file)}
    if as_json:
        emit_json(info)
    else:
        click.echo(f"peer ID:    {info['peer_id']}")
        click.echo(f"public key: {info['public_key']} (Ed25519)")


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="Name recorded in the manifest (default: the file's name).")
@click.option("--type", "media_type", default=None, help="Media type (default: guessed from the name).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable output.")
@click.pass_obj
def share(obj: Ctx, file: Path, name: str | None, media_type: str | None, as_json: bool) -> None:
    """Chunk, hash and sign FILE, store it, and print its content ID.

    \b
    Example:
      vouchnet --home ./alice share report.pdf --json
    """
    media_type = media_type or mimetypes.guess_type(name or file.name)[0] or "application/octet-stream"
    from overlay.node import control
    if control.node_running(obj.home.path):
        # The running node holds the unlocked key and announces the content on the DHT.
        info = control.call(obj.home.path, {"op": "share", "path": str(file.resolve()), "name": name,
                                            "media_type": media_type}, timeout=3600)
    else:
        identity = obj.identity()
        cfg = load_config(obj.home.config_file)
        store = obj.store()
        try:
            with progress(file.stat().st_size, f"sharing {file.name}") as update:
                item = store.add_file(file, identity, name=name, media_type=media_type,
                                      chunk_size=cfg.chunk_size, progress=update)
        finally:
            store.close()
        m = item.manifest
        info = {"cid": item.cid, "name": m.name, "size": m.size, "chunks": m.chunk_count,
                "chunk_size": m.chunk_size, "root": m.root.hex(), "media_type": m.media_type,
                "publisher": m.publisher}
    if as_json:
        emit_json(info)
    else:
        click.echo(info["cid"])
        click.echo(f"  {info['name']}: {info['size']} bytes in {info['chunks']} chunks, root {info['root'][:16]}…, "
                   f"signed by {info['publisher']}", err=True)


@main.command()
@click.argument("target")
@click.option("--cid", "against", default=None, help="With a FILE: check it against this content ID.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable output.")
@click.pass_obj
def verify(obj: Ctx, target: str, against: str | None, as_json: bool) -> None:
    """Re-check content against its signed manifest.

    TARGET is a content ID in the store, or a FILE on disk. A file is checked against --cid,
    or matched against every manifest in the store. Exit 0 when it verifies, 1 when not.

    \b
    Examples:
      vouchnet --home ./alice verify bafyr...
      vouchnet --home ./alice verify ./report.pdf --cid bafyr...
    """
    store = obj.store()
    try:
        path = Path(target)
        if against is None and not path.exists():
            try:
                parse_cid(target)
            except DecodeError as exc:
                fail(f"{exc}; and no file named {target!r} exists")
            reports = [store.verify(target)]
        elif against is not None:
            reports = [store.verify_external(path, against)]
        else:
            matches = store.find_by_file(path)
            if not matches:
                result = {"target": target, "ok": False, "reason": "matches no signed manifest in this store"}
                emit_json(result) if as_json else click.echo(f"FAIL {target}: {result['reason']}")
                sys.exit(1)
            reports = [store.verify_external(path, c) for c in matches]
    finally:
        store.close()
    ok = all(r.ok for r in reports)
    if as_json:
        emit_json({"target": target, "ok": ok, "results": [
            {"cid": r.cid, "ok": r.ok, "chunks": r.chunks, "bad_chunks": r.bad_chunks, "reason": r.reason}
            for r in reports]})
    else:
        for r in reports:
            status = "OK  " if r.ok else "FAIL"
            bad = f" (bad chunks: {', '.join(map(str, r.bad_chunks[:20]))})" if r.bad_chunks else ""
            click.echo(f"{status} {r.cid}: {r.reason}{bad}")
    sys.exit(0 if ok else 1)


@main.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable output.")
@click.pass_obj
def ls(obj: Ctx, as_json: bool) -> None:
    """List the content in the local store."""
    store = obj.store()
    try:
        items = store.list()
    finally:
        store.close()
    if as_json:
        emit_json([{"cid": i.cid, "name": i.manifest.name, "size": i.manifest.size, "complete": i.complete,
                    "publisher": i.manifest.publisher} for i in items])
        return
    from rich.console import Console
    from rich.table import Table
    table = Table("content ID", "name", "size", "state", "publisher")
    for i in items:
        table.add_row(i.cid, i.manifest.name, str(i.manifest.size),
                      "complete" if i.complete else f"{i.chunks_present}/{i.manifest.chunk_count}",
                      i.manifest.publisher[:16] + "…")
    Console().print(table)


@main.command()
@click.argument("cid")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the content.")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@click.pass_obj
def export(obj: Ctx, cid: str, output: Path, force: bool) -> None:
    """Write stored content to a file, re-verifying every chunk on the way (atomic)."""
    parse_cid(cid)
    store = obj.store()
    try:
        store.export(cid, output, overwrite=force)
    finally:
        store.close()
    click.echo(f"wrote {output}")
