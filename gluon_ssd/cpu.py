"""The CPU's vector features, logged beside every speed figure (int8/bf16 speed-ups depend on them)."""
from __future__ import annotations

import functools
import os
import platform

# /proc/cpuinfo flag -> the name printed.
_FLAGS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "VNNI", "avx_vnni": "AVX-VNNI",
          "avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX-BF16", "amx_int8": "AMX-INT8"}


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and value.strip():
                    model = value.strip()
                elif key == "flags":
                    flags.update(value.split())
                    break
    except OSError:
        pass
    return model, frozenset(flags)


def vector_features() -> list[str]:
    """The speed-relevant vector extensions this CPU has, e.g. ['AVX2', 'AVX-512', 'VNNI', 'AVX512-BF16']."""
    _, flags = _cpuinfo()
    return [name for flag, name in _FLAGS.items() if flag in flags]


def has_int8_dot_product() -> bool:
    """VNNI (AVX-512 or AVX): 8-bit multiply-adds without the 16-bit intermediate that saturates on AVX2."""
    return bool({"VNNI", "AVX-VNNI", "AMX-INT8"} & set(vector_features()))


def describe() -> str:
    """One line: the CPU model and its vector features, e.g. 'AMD EPYC (AVX2 AVX-512 VNNI AVX512-BF16)'."""
    model, _ = _cpuinfo()
    features = vector_features()
    return f"{model} ({' '.join(features) if features else 'no AVX2'})"


def runtime_threads() -> int:
    """Threads of an ONNX Runtime / OpenVINO session: OMP_NUM_THREADS where set (as torch's), else every core."""
    try:
        return max(int(os.environ.get("OMP_NUM_THREADS", "")), 1)
    except ValueError:
        return os.cpu_count() or 1
