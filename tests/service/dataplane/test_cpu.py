"""Whether a CPU computes INT8 dot products exactly, read from /proc/cpuinfo texts written here."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.dataplane.cpu import Int8Arithmetic, int8_arithmetic, this_cpu

AVX2 = "fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2"
AARCH64 = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp
CPU implementer\t: 0x41
"""


def _cpuinfo(tmp_path: Path, *flag_lines: str) -> Path:
    """One processor block per flags line, as Linux writes them on x86."""
    blocks = [
        f"processor\t: {i}\nvendor_id\t: GenuineIntel\nflags\t\t: {flags}\nbogomips\t: 4800.00\n"
        for i, flags in enumerate(flag_lines)
    ]
    path = tmp_path / "cpuinfo"
    path.write_text("\n".join(blocks))
    return path


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        (AVX2, False),
        (f"{AVX2} avx512f avx512bw avx512_vnni", True),
        (f"{AVX2} avx_vnni", True),
        (f"{AVX2} avx512_vnni amx_bf16 amx_tile amx_int8", True),
        (f"{AVX2} amx_int8", True),
        (f"{AVX2} avx512f avx512_bf16 avx512vnni_typo", False),
    ],
    ids=["avx2-only", "avx512-vnni", "avx-vnni", "amx", "amx-alone", "a-flag-only-alike"],
)
def test_native_iff_a_vnni_or_amx_flag(tmp_path: Path, flags: str, native: bool) -> None:
    answer = int8_arithmetic(_cpuinfo(tmp_path, flags, flags), machine="x86_64")
    assert answer.native is native
    assert answer.reason


def test_the_reason_names_the_flag_or_its_absence(tmp_path: Path) -> None:
    assert "avx_vnni" in int8_arithmetic(_cpuinfo(tmp_path, f"{AVX2} avx_vnni"), machine="x86_64").reason
    assert "saturates" in int8_arithmetic(_cpuinfo(tmp_path, AVX2), machine="x86_64").reason


def test_a_flag_counts_only_when_every_processor_has_it(tmp_path: Path) -> None:
    assert not int8_arithmetic(_cpuinfo(tmp_path, f"{AVX2} avx_vnni", AVX2), machine="x86_64").native


@pytest.mark.parametrize("machine", ["aarch64", "arm64", "ppc64le", "riscv64"])
def test_not_x86_is_not_native(tmp_path: Path, machine: str) -> None:
    """Even with a flags line (x86 words in a file on an ARM machine): x86 kernels are not what runs there."""
    answer = int8_arithmetic(_cpuinfo(tmp_path, f"{AVX2} avx512_vnni"), machine=machine)
    assert answer == Int8Arithmetic(False, answer.reason)
    assert machine in answer.reason


def test_aarch64_text_has_no_flags_line(tmp_path: Path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(AARCH64)
    answer = int8_arithmetic(path, machine="x86_64")
    assert not answer.native
    assert "no flags line" in answer.reason


@pytest.mark.parametrize("text", ["", "\n\n", "processor\t: 0\nvendor_id\t: GenuineIntel\n"])
def test_empty_or_flagless_is_not_native(tmp_path: Path, text: str) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    assert not int8_arithmetic(path, machine="x86_64").native


def test_a_missing_file_is_not_native(tmp_path: Path) -> None:
    answer = int8_arithmetic(tmp_path / "absent", machine="x86_64")
    assert not answer.native
    assert "unreadable" in answer.reason


def test_this_cpu_is_read_once() -> None:
    assert this_cpu() is this_cpu()
    assert this_cpu() == int8_arithmetic()
