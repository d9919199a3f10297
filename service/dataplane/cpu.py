"""Does this CPU compute INT8 dot products exactly? ONNX Runtime's INT8 kernels (QDQ: u8 activations x s8
weights) sum in 32 bits on CPUs with VNNI (AVX-512 VNNI, AVX-VNNI) or AMX-INT8. On AVX2-only x86 CPUs the fast
kernel (`vpmaddubsw`) saturates 16-bit pair sums when weights use the full 8-bit range, and the answers move;
there only ONNX Runtime's exact emulation (`session.x64quantprecision`, slower than the fast kernels) gives the
card's answers.

Anything unknown (no /proc/cpuinfo, not x86, no `flags` line) counts as not native: the safe side, since the
caller then asks for exact sums (an x64 setting that other CPUs ignore), and never serves saturated answers.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
EXACT_INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
"""/proc/cpuinfo flags of the instructions whose INT8 dot products sum in 32 bits."""
X86_MACHINES = frozenset({"x86_64", "amd64", "i386", "i686"})


@dataclass(frozen=True, slots=True)
class Int8Arithmetic:
    native: bool
    """True: INT8 dot products are exact in hardware, so an INT8 file answers as its card measured it."""
    reason: str
    """One line for the log: which flag, or why the answer is False."""


def int8_arithmetic(cpuinfo: Path = CPUINFO, machine: str | None = None) -> Int8Arithmetic:
    """Read `cpuinfo` (a /proc/cpuinfo text); `machine` is platform.machine() unless given. A flag counts only
    when every processor lists it."""
    machine = machine or platform.machine()
    if machine.lower() not in X86_MACHINES:
        return Int8Arithmetic(False, f"not an x86 CPU ({machine}): its INT8 arithmetic is unknown here")
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return Int8Arithmetic(False, f"{cpuinfo} is unreadable: the CPU's INT8 arithmetic is unknown")
    per_processor = [set(value.split()) for key, value in map(_field, text.splitlines()) if key == "flags"]
    if not per_processor:
        return Int8Arithmetic(False, f"{cpuinfo} has no flags line: the CPU's INT8 arithmetic is unknown")
    common = set.intersection(*per_processor)
    found = [flag for flag in EXACT_INT8_FLAGS if flag in common]
    if found:
        return Int8Arithmetic(True, f"the CPU has {', '.join(found)}: INT8 dot products are exact")
    return Int8Arithmetic(
        False,
        f"the CPU has none of {', '.join(EXACT_INT8_FLAGS)}: AVX2's fast INT8 kernel saturates 16-bit pair sums",
    )


def _field(line: str) -> tuple[str, str]:
    """`flags\t\t: fpu vme ...` -> ("flags", " fpu vme ...")."""
    key, _, value = line.partition(":")
    return key.strip(), value


@functools.cache
def this_cpu() -> Int8Arithmetic:
    """`int8_arithmetic()` of the machine, read once per process."""
    return int8_arithmetic()
