"""docs/api.md's examples of Triton's extensions, run as written (only the ports change) against a fresh service
over the shipped models, in order, each in its own process; what each prints is the text block after it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import REPO_ROOT, ServiceProcess

SECTION = "## Triton's extensions"
CAT = "cat-cat.webp"


def examples() -> list[tuple[str, str]]:
    """(python code, the output the docs show for it)."""
    text = (REPO_ROOT / "docs" / "api.md").read_text()
    section = text[text.index(SECTION) :]
    section = section[: idx if (idx := section.find("\n## ", 1)) > 0 else len(section)]
    return re.findall(r"```python\n(.*?)```\s*```text\n(.*?)```", section, flags=re.S)


def test_the_section_covers_each_extension() -> None:
    code = "\n".join(body for body, _ in examples())
    for call in ("get_model_config", "get_inference_statistics", "class_count", "InferenceServerException"):
        assert call in code, call


@pytest.fixture(scope="module")
def svc() -> Iterator[ServiceProcess]:
    # The documented numbers are FP32's: on a CPU with VNNI the default serves INT8, which moves the fourth
    # decimal (docs/api.md says so beside them).
    env = {"CATDOG_MODEL_DIR": str(REPO_ROOT / "models"), "CATDOG_PRECISION": "fp32"}
    with ServiceProcess(env) as service:
        yield service


def _same(printed: str, documented: str) -> bool:
    """Equal, except that a number may differ from the documented one by 1e-4 (another CPU's last digits)."""
    number = r"\d+\.\d+"
    if re.sub(number, "#", printed) != re.sub(number, "#", documented):
        return False
    return all(
        abs(float(a) - float(b)) <= 1e-4
        for a, b in zip(re.findall(number, printed), re.findall(number, documented), strict=True)
    )


def test_examples_print_what_the_docs_show(svc: ServiceProcess, photos: dict[str, Path], tmp_path: Path) -> None:
    """In order on one fresh service: the statistics the first one prints are those of a service that has
    answered nothing yet, the second one's those after its one request."""
    shutil.copy(photos[CAT], tmp_path / "cat.jpg")
    found = examples()
    assert len(found) == 2
    for code, documented in found:
        code = code.replace("127.0.0.1:8000", f"127.0.0.1:{svc.port}").replace("127.0.0.1:8001", svc.grpc_target)
        run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert _same(run.stdout.strip(), documented.strip()), f"printed:\n{run.stdout}\ndocumented:\n{documented}"
