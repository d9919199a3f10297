"""The servers under test: what each installs, how it starts, how a JPEG reaches it and whether it batches."""

from __future__ import annotations

from dataclasses import dataclass

CATDOG = "catdog"


@dataclass(frozen=True, slots=True)
class Peer:
    name: str
    title: str
    dist: str  # the distribution whose version the report shows
    requirements: tuple[str, ...]  # pip requirements of its venv, besides catdog's data-plane dependencies
    module: str  # the server, run as `python -m` inside the venv (catdog: its own CLI)
    path: str  # the inference route; {model} is the model's name
    encoding: str  # a key of loadtest.peers.protocol.ENCODINGS
    batching: str | None  # its own batching, as the report names it; None: it has none
    extra_ports: int = 0  # free loopback ports it needs besides HTTP (gRPC, metrics)
    needs_libpython: bool = False  # LD_LIBRARY_PATH on the venv's base interpreter's lib/ (Triton's stub)
    start_timeout_s: float = 120.0


PEERS: dict[str, Peer] = {
    p.name: p
    for p in (
        Peer(
            CATDOG,
            "catdog",
            "catdog",
            (),
            "service",
            "/predict/{model}",
            "multipart",
            "CATDOG_BATCH_MAX_SIZE / _WAIT_MS",
        ),
        Peer(
            "kserve",
            "KServe ModelServer",
            "kserve",
            ("kserve==0.21.0",),
            "loadtest.peers.servers.kserve_server",
            "/v2/models/{model}/infer",
            "oip-json-base64",
            None,
            extra_ports=1,
        ),
        Peer(
            "litserve",
            "LitServe",
            "litserve",
            # Starlette parses LitServe's form uploads with python-multipart, which litserve does not require.
            ("litserve==0.2.19", "python-multipart"),
            "loadtest.peers.servers.litserve_server",
            "/predict",
            "multipart",
            "LitAPI max_batch_size, batch_timeout",
        ),
        Peer(
            "pytriton",
            "Triton (PyTriton, Python backend)",
            "nvidia-pytriton",
            ("nvidia-pytriton==0.7.0", "numpy<2"),
            "loadtest.peers.servers.pytriton_server",
            "/v2/models/{model}/infer",
            "oip-binary",
            "dynamic batcher",
            extra_ports=2,
            needs_libpython=True,
        ),
        Peer(
            "bentoml",
            "BentoML",
            "bentoml",
            ("bentoml==1.4.40",),
            "loadtest.peers.servers.bentoml_service",
            "/predict",
            "multipart",
            "adaptive batching (batchable)",
        ),
        Peer(
            "mlserver",
            "MLServer",
            "mlserver",
            # uvloop 0.22+ kills MLServer 1.7.1's inference worker at start ("There is no current event loop").
            ("mlserver==1.7.1", "uvloop<0.22"),
            "loadtest.peers.servers.mlserver_runtime",
            "/v2/models/{model}/infer",
            "oip-json-base64-mlserver",
            "adaptive batching",
            extra_ports=2,
        ),
        Peer(
            "rayserve",
            "Ray Serve",
            "ray",
            ("ray[serve]==2.60.0",),
            "loadtest.peers.servers.rayserve_app",
            "/predict",
            "raw",
            "@serve.batch",
            start_timeout_s=180.0,
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Contender:
    """One server configuration in the run: a peer with its own batching off or on."""

    peer: Peer
    batched: bool

    @property
    def key(self) -> str:
        return f"{self.peer.name}+batch" if self.batched else self.peer.name


def contenders(names: list[str], batching: list[str]) -> list[Contender]:
    """catdog first (peers' answers are checked against its), then the peers in the order given; `batching` is a
    subset of {"off", "on"}; "on" only for servers that have batching of their own."""
    ordered = [CATDOG, *[n for n in names if n != CATDOG]]
    out = []
    for name in ordered:
        peer = PEERS[name]
        if "off" in batching:
            out.append(Contender(peer, batched=False))
        if "on" in batching and peer.batching is not None:
            out.append(Contender(peer, batched=True))
    return out
