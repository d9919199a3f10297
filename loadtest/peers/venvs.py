"""One venv per peer under .peers/ (their pins clash). Besides the framework, each gets what catdog's data
plane imports, read from the code and pyproject.toml at run time, so a new imaging library the project adopts
reaches every peer without editing this file."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import packages_distributions
from pathlib import Path

from loadtest.bench import REPO_ROOT
from loadtest.peers.registry import CATDOG, Peer

PEERS_DIR = REPO_ROOT / ".peers"
SERVER_COMMON = "loadtest.peers.servers.common"
OWN_PACKAGES = ("service", "loadtest", "conversion")
STAMP = ".catdog-requirements"


def _module_file(module: str, root: Path) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(start: str, root: Path = REPO_ROOT) -> set[str]:
    """Top-level names of the third-party modules that importing `start` imports, following the project's own
    modules (and the packages above them, which run first)."""
    seen: set[str] = set()
    todo = [start]
    third_party: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        path = _module_file(module, root)
        if path is None:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                top = name.split(".")[0]
                if top in OWN_PACKAGES:
                    todo.append(name)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    third_party.add(top)
    return third_party


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _requirement_name(spec: str) -> str:
    for i, char in enumerate(spec):
        if not (char.isalnum() or char in "-_."):
            return _canonical(spec[:i])
    return _canonical(spec)


def dataplane_requirements(pyproject: Path = REPO_ROOT / "pyproject.toml", start: str = SERVER_COMMON) -> list[str]:
    """pip requirements for what `start` imports: the distributions providing those modules (as installed in
    this, the project's, environment), with the version bounds pyproject.toml gives them."""
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    specs = {_requirement_name(d): d for d in dependencies}
    providers = packages_distributions()
    out = set()
    for module in imported_modules(start, pyproject.parent):
        for dist in providers.get(module, [module]):
            out.add(specs.get(_canonical(dist), _canonical(dist)))
    return sorted(out)


def venv_python(peer: Peer) -> Path:
    return Path(sys.executable) if peer.name == CATDOG else PEERS_DIR / peer.name / "bin" / "python"


def requirements(peer: Peer, dataplane: Iterable[str]) -> list[str]:
    return [*peer.requirements, *dataplane]


def base_lib_dir(venv: Path) -> Path:
    """The lib/ folder of the interpreter a venv was made from (its pyvenv.cfg `home` is that bin/)."""
    for line in (venv / "pyvenv.cfg").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            return Path(value.strip()).parent / "lib"
    return Path(sys.base_prefix) / "lib"


def ensure(peer: Peer, dataplane: list[str], log: Path) -> str | None:
    """Create or update the peer's venv; None when ready, else why not (the tail of pip's output)."""
    if peer.name == CATDOG:
        return None
    venv = PEERS_DIR / peer.name
    wanted = "\n".join(requirements(peer, dataplane)) + "\n"
    stamp = venv / STAMP
    if stamp.is_file() and stamp.read_text() == wanted and venv_python(peer).exists():
        return None
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    steps = [[str(base), "-m", "venv", str(venv)]] if not venv_python(peer).exists() else []
    steps.append([str(venv_python(peer)), "-m", "pip", "install", "--quiet", *requirements(peer, dataplane)])
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        for step in steps:
            out.write("$ " + " ".join(step) + "\n")
            out.flush()
            if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, check=False).returncode != 0:
                tail = [line for line in log.read_text().splitlines() if "error" in line.lower()][-3:]
                return f"install failed ({log}): " + (" / ".join(tail) or "see the log")
    stamp.write_text(wanted)
    return None


def ensure_all(peers: list[Peer], logs: Path) -> dict[str, str | None]:
    """Install the venvs in parallel (network-bound); peer name -> None or why it cannot run."""
    dataplane = dataplane_requirements()
    with ThreadPoolExecutor(max_workers=max(1, len(peers))) as pool:
        futures = {p.name: pool.submit(ensure, p, dataplane, logs / f"install-{p.name}.log") for p in peers}
    return {name: future.result() for name, future in futures.items()}


def versions(peer: Peer) -> dict[str, str]:
    """The framework's version and those of the libraries doing the per-image work, as installed for it."""
    python = venv_python(peer)
    dists = [peer.dist, "onnxruntime", "numpy", "pillow"]
    code = (
        "import importlib.metadata as m, json, sys\n"
        "def v(d):\n    try:\n        return m.version(d)\n    except m.PackageNotFoundError:\n        return None\n"
        f"print(json.dumps({{d: v(d) for d in {dists!r}}} | {{'python': sys.version.split()[0]}}))"
    )
    if not python.exists():
        return {}
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    found: dict[str, str] = json.loads(done.stdout) if done.returncode == 0 else {}
    return {k: v for k, v in found.items() if v}
