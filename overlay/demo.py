"""`make demo`: the main job on the embedded default, narrated step by step.

Runs the real `vouchnet` command line in a scratch folder (demo-out/): two identities, a share,
a verified local transfer between two stores, a corrupted chunk refused, and a verify.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from rich.console import Console

console = Console()
OUT = Path("demo-out")


def vouchnet(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "overlay.cli", *args]
    console.print(f"[bold cyan]$ vouchnet {' '.join(args)}[/]")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.stdout.strip():
        console.print(proc.stdout.rstrip(), highlight=False)
    if proc.stderr.strip():
        console.print(f"[dim]{proc.stderr.rstrip()}[/]", highlight=False)
    if check and proc.returncode != 0:
        console.print(f"[red]command failed with exit status {proc.returncode}[/]")
        sys.exit(1)
    return proc


def step(title: str) -> None:
    console.rule(f"[bold]{title}")


def local_transfer(alice: Path, bob: Path, cid: str) -> None:
    """Move content chunk by chunk between two stores, as the network does, corrupting one copy."""
    from overlay.store import ContentStore
    from trust.errors import ProofError

    src, dst = ContentStore(alice / "store"), ContentStore(bob / "store")
    item = src.require(cid)
    dst.begin(cid, item.signed_manifest)
    data, proof = src.read_chunk(cid, 0)
    try:
        dst.put_chunk(cid, 0, b"\xff" + data[1:], proof)
    except ProofError as exc:
        console.print(f"[green]corrupted chunk 0 refused before writing:[/] {exc}")
    for i in range(item.manifest.chunk_count):
        dst.put_chunk(cid, i, *src.read_chunk(cid, i))
    dst.finish(cid)
    console.print(f"bob verified and stored all {item.manifest.chunk_count} chunks against alice's signed root")
    src.close()
    dst.close()


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    alice, bob = OUT / "alice", OUT / "bob"
    step("1. Two identities (Ed25519; the peer ID is the libp2p peer ID)")
    vouchnet("--home", str(alice), "init")
    vouchnet("--home", str(bob), "init")
    vouchnet("--home", str(alice), "id", "--json")

    step("2. Alice shares a 3 MiB file: chunked, Merkle-hashed, manifest signed")
    f = OUT / "dataset.bin"
    f.write_bytes(os.urandom(3 * 1024 * 1024 + 12345))
    proc = vouchnet("--home", str(alice), "share", str(f))
    cid = proc.stdout.split()[0]

    step("3. Bob receives it chunk by chunk; every chunk is proven against the signed root")
    local_transfer(alice, bob, cid)
    vouchnet("--home", str(bob), "export", cid, "-o", str(OUT / "received.bin"))
    vouchnet("--home", str(bob), "verify", str(OUT / "received.bin"))

    step("4. Tampering is caught")
    data = bytearray((bob / "store" / "data" / f"{cid}.data").read_bytes())
    data[1_000_000] ^= 0x01
    (bob / "store" / "data" / f"{cid}.data").write_bytes(bytes(data))
    proc = vouchnet("--home", str(bob), "verify", cid, check=False)
    console.print(f"[green]verify exit status {proc.returncode}: damaged chunk named[/]" if proc.returncode == 1
                  else "[red]tampering was NOT detected[/]")
    if proc.returncode != 1:
        sys.exit(1)
    console.rule("[bold green]demo complete")


if __name__ == "__main__":
    main()
