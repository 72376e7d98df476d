"""Which providers a fetch asks, in what order, and what it does with ones the local policy
refuses, without a network: overlay.node.fetch.order_providers, Fetch._choose with a real
PolicyService, and the node's fetch API (overlay/node/operations.py) on a fake node.
The end-to-end check with real nodes is tests/integration/test_integration.py::test_refused_provider_is_skipped."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest
import trio

from overlay.node import operations as node_control
from overlay.node.fetch import Fetch, FetchResult, order_providers
from overlay.services.policy import PolicyDenied, PolicyService
from tests.overlay.services.test_policy_node import FakeRep
from trust.identity import Identity
from trust.manifest import content_id_from_digest

ME, H1, H2, N1, N2, N3, N4, D, X = (Identity.from_seed(bytes([40 + i]) * 32).peer_id for i in range(9))
CID = content_id_from_digest(bytes(range(32)))
MAX_PROVIDERS = 4  # overlay.config's default: the fetch uses the first 4 of the order

# Merely connected peers N1-N4 are trusted more than the holders H1 (named) and H2 (announced);
# D is distrusted.
TRUST = {N1: 0.9, N2: 0.8, N3: 0.7, N4: 0.6, H2: 0.2, H1: 0.1, X: 0.5}
DISTRUSTED = {D}


def rank(peers: list[str]) -> list[str]:
    """Like ReputationService.rank: distrusted dropped, most trusted first."""
    return sorted((p for p in peers if p not in DISTRUSTED), key=lambda p: -TRUST.get(p, 0.0))


def policy(tmp_path: Path, rules: str) -> PolicyService:
    path = tmp_path / "policy.toml"
    path.write_text('[policy]\ndefault = "allow"\n' + rules)
    rep = FakeRep()
    rep.peer_id = ME
    return PolicyService(tmp_path, path, rep=rep)


def deny(name: str, peer: str, actions: str = "") -> str:
    return f'\n[[rule]]\ntype = "deny_peers"\nname = "{name}"\n{actions}peers = ["{peer}"]\n'


# -- ranking ----------------------------------------------------------------------------------

def test_known_holders_come_before_trusted_non_holders():
    ordered, skipped = order_providers([H1], [H2], [N1, N2, N3, N4, H1, D, ME], ME, rank)
    assert ordered == [H2, H1, N1, N2, N3, N4]  # holders first, each group by trust
    assert set(ordered[:MAX_PROVIDERS]) >= {H1, H2}  # trusted non-holders cannot take every slot
    assert skipped == [D]  # distrusted: never asked, reported


def test_order_has_each_peer_once_and_never_ourselves():
    ordered, skipped = order_providers([H1, H1, ME], [H1, H2], [H2, N1, N1], ME, rank)
    assert ordered == [H2, H1, N1] and skipped == []
    assert order_providers([], [], [], ME, rank) == ([], [])


def test_distrusted_holder_is_not_asked():
    ordered, skipped = order_providers([D], [H1], [N1], ME, rank)
    assert ordered == [H1, N1] and skipped == [D]


# -- the local policy ---------------------------------------------------------------------------

def fetch_for(svc: PolicyService, providers: list[str], refused: dict[str, str] | None = None) -> Fetch:
    return Fetch(SimpleNamespace(policy=svc), CID, list(providers), refused=refused)


def test_refused_provider_is_skipped_and_reported_with_its_rule(tmp_path: Path):
    svc = policy(tmp_path, deny("no-x", X, 'actions = ["choose_provider"]\n'))
    f = fetch_for(svc, [X, H1, H2])
    f._choose(None)
    assert f.candidates == [H1, H2]
    assert f.refused == {X: "choose_provider denied by rule no-x (peer is on the deny list)"}
    f._choose(1000)  # with the size known: the same answer, noted once
    assert f.candidates == [H1, H2] and list(f.refused) == [X]


def test_no_allowed_provider_left_names_every_refused_one_and_its_rule(tmp_path: Path):
    svc = policy(tmp_path, deny("no-x", X) + deny("skip-h1", H1, 'actions = ["choose_provider"]\n'))
    # X was refused when dialled (outbound_dial), H1 as a provider (choose_provider)
    f = fetch_for(svc, [H1], refused={X: "outbound_dial denied by rule no-x (peer is on the deny list)"})
    with pytest.raises(PolicyDenied) as info:
        f._choose(None)
    msg = str(info.value)
    assert f"refuses every provider of {CID}" in msg
    assert f"{X}: outbound_dial denied by rule no-x" in msg and f"{H1}: choose_provider denied by rule skip-h1" in msg
    assert "vouchnet policy explain" in msg  # what to do about it
    # refused only when dialled, nobody else known: the same error
    with pytest.raises(PolicyDenied, match=f"refuses every provider.*{X}: outbound_dial denied by rule no-x"):
        fetch_for(svc, [], refused={X: "outbound_dial denied by rule no-x (peer is on the deny list)"})._choose(None)


def test_the_policy_order_does_not_put_non_holders_before_a_limited_holder(tmp_path: Path):
    svc = policy(tmp_path, f"""
[[rule]]
type = "allow_peers"
actions = ["choose_provider"]
peers = ["{N1}", "{N2}"]

[[rule]]
type = "rate_limit"
actions = ["choose_provider"]
rate = 5.0
""")
    # H1 gets a LIMIT, N1 and N2 an ALLOW: the policy's own order would be N1, N2, H1
    assert svc.choose_providers([H1, N1, N2]) == [N1, N2, H1]
    f = Fetch(SimpleNamespace(policy=svc), CID, [H1, N1, N2], holders={H1})
    f._choose(None)
    assert f.candidates == [H1, N1, N2] and f.refused == {}


def test_reported_holders_go_after_unreported_ones(tmp_path: Path):
    """The reputation's tier (credible fault reports) is passed to the policy's ordering."""
    svc = policy(tmp_path, "")
    node = SimpleNamespace(policy=svc, reputation=SimpleNamespace(tier=lambda p: int(p == H1)))
    f = Fetch(node, CID, [H1, H2, N1], holders={H1, H2})
    f._choose(None)
    assert f.candidates == [H2, H1, N1]  # H1 is reported; N1 holds nothing


def test_without_refusals_an_empty_list_is_left_to_the_caller(tmp_path: Path):
    f = fetch_for(policy(tmp_path, ""), [])
    f._choose(None)  # "no providers known" is the caller's error, not a policy one
    assert f.candidates == [] and f.refused == {}


# -- the node's fetch API -----------------------------------------------------------------------

class FakeNode:
    """What node_control's fetch handler uses of overlay.node.daemon.Node, without a network."""

    def __init__(self, svc: PolicyService, connected: list[str], found: list[str]):
        self.peer_id = ME
        self.policy = svc
        self.reputation = SimpleNamespace(rank=rank)
        self._connected = list(connected)
        self._found = found
        self.dialled: list[str] = []

    async def connect(self, addr: str) -> str:
        peer = addr.rsplit("/p2p/", 1)[1]
        self.policy.check_dial(peer)  # as Node.connect: PolicyDenied before dialling
        self.dialled.append(peer)
        if peer not in self._connected:
            self._connected.append(peer)
        return peer

    async def find_providers(self, cid: str) -> list[Any]:
        return [SimpleNamespace(peer_id=p, addrs=[]) for p in self._found]

    def connected_peers(self) -> list[str]:
        return list(self._connected)

    def provide_soon(self, cid: str) -> None:
        return None


def run_fetch_op(monkeypatch: pytest.MonkeyPatch, node: FakeNode, named: list[str]) -> tuple[dict, list]:
    """Call the node's fetch op with a Fetch that stops after choosing its providers."""
    made: list[Fetch] = []

    class ChoosingFetch(Fetch):
        async def run(self) -> FetchResult:
            made.append(self)
            self.asked = list(self.candidates)
            self._choose(None)
            return FetchResult(self.cid, 0, 0, 0.0, {}, 0, self.refused)

    monkeypatch.setattr(node_control, "Fetch", ChoosingFetch)
    op: Callable = node_control.handlers(node)["fetch"]

    async def send(ev: dict) -> None:
        return None

    req = {"op": "fetch", "cid": CID, "output": None,
           "providers": [f"/ip4/127.0.0.1/tcp/9/p2p/{p}" for p in named]}
    out = trio.run(op, req, send)
    return out, made


def test_fetch_op_skips_a_named_provider_the_policy_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    svc = policy(tmp_path, deny("no-x", X) + deny("skip-n1", N1, 'actions = ["choose_provider"]\n'))
    node = FakeNode(svc, connected=[N1, N2, N3, N4, H2, D], found=[H2])
    out, (f,) = run_fetch_op(monkeypatch, node, [X, H1])
    assert X not in node.dialled and H1 in node.dialled
    # named and announced holders first, then connected peers by trust; X never asked
    assert f.asked == [H2, H1, N1, N2, N3, N4]
    assert f.candidates == [H2, H1, N2, N3, N4]
    assert out["refused_by_policy"] == {X: "outbound_dial denied by rule no-x (peer is on the deny list)",
                                        N1: "choose_provider denied by rule skip-n1 (peer is on the deny list)"}
    assert out["skipped_distrusted"] == [D]


def test_fetch_op_does_not_use_a_refused_named_peer_over_its_own_connection(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch):
    svc = policy(tmp_path, deny("no-x", X, 'actions = ["outbound_dial"]\n'))
    node = FakeNode(svc, connected=[X, H2], found=[X, H2])  # X connected to us and announced
    out, (f,) = run_fetch_op(monkeypatch, node, [X])
    assert f.asked == [H2] and list(out["refused_by_policy"]) == [X]


def test_fetch_op_fails_when_the_policy_refuses_every_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    svc = policy(tmp_path, deny("no-x", X) + deny("skip-h2", H2, 'actions = ["choose_provider"]\n'))
    node = FakeNode(svc, connected=[H2], found=[H2])
    with pytest.raises(PolicyDenied) as info:
        run_fetch_op(monkeypatch, node, [X])
    msg = str(info.value)
    assert f"{X}: outbound_dial denied by rule no-x" in msg and f"{H2}: choose_provider denied by rule skip-h2" in msg
