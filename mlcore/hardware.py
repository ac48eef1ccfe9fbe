"""The hardware class a model was trained on: what decides whether its weights' bytes can be reproduced.

TensorFlow's own CPU kernels are compiled for one instruction set, but the oneDNN kernels it calls for
matrix products and convolutions pick their instruction set (and their blocking) at run time from the CPU
they find: the same code, settings and data can give other bits on a CPU with other vector units or cache
sizes. A class groups machines that may be expected to agree bit for bit: same CPU vendor, same vector
features that kernels dispatch on, same per-core cache sizes, same TensorFlow build, same kernel ISA cap
(ONEDNN_MAX_CPU_ISA), and on an accelerator the same device, driver and CUDA/cuDNN.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

# CPU features a numeric kernel may dispatch on (oneDNN, Eigen, MKL): their presence changes code paths
NUMERIC_FLAGS = (
    "sse4_1",
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx_vnni",
    "avx512f",
    "avx512dq",
    "avx512cd",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "sve",
    "sve2",
)
# x86-64 micro-architecture levels (psABI): each adds features to the one before
X86_LEVELS = (
    ("x86-64-v2", {"sse4_1", "sse4_2", "ssse3", "popcnt", "cx16"}),
    ("x86-64-v3", {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "movbe", "xsave"}),
    ("x86-64-v4", {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}),
)
CACHE_ROOT = Path("/sys/devices/system/cpu/cpu0/cache")
# Node Feature Discovery's CPU labels (feature.node.kubernetes.io/cpu-model.*): where a replay can be pinned
NFD_LABELS = ("vendor_id", "family", "id")
NFD_VENDORS = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD"}


def _cpuinfo() -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_flags() -> list[str]:
    """The CPU's feature flags (x86 `flags`, Arm `Features`), sorted."""
    info = _cpuinfo()
    return sorted(info.get("flags", info.get("Features", "")).split())


def isa_level(flags: set[str]) -> str:
    level = "x86-64"
    for name, required in X86_LEVELS:
        if not required <= flags:
            break
        level = name
    return level


def caches() -> dict[str, str]:
    """Per-core cache sizes of cpu0, e.g. {"L1d": "32K", "L2": "1024K"} (oneDNN blocks by them)."""
    found = {}
    for index in sorted(CACHE_ROOT.glob("index*")):
        try:
            level, kind = (index / "level").read_text().strip(), (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        name = f"L{level}" + {"Data": "d", "Instruction": "i"}.get(kind, "")
        found[name] = size
    return found


def _gpus() -> list[dict]:
    """Accelerators TensorFlow sees, with the driver from nvidia-smi when there is one."""
    import tensorflow as tf

    devices = tf.config.list_physical_devices("GPU")
    gpus = [tf.config.experimental.get_device_details(d) | {"name": d.name} for d in devices]
    if gpus:
        try:
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
            for gpu, line in zip(gpus, smi.splitlines(), strict=False):
                gpu["driver"] = line.split(",")[-1].strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    return gpus


def describe() -> dict:
    """This machine's hardware class: the facts that decide the bits, and the model name for people."""
    import tensorflow as tf

    info = _cpuinfo()
    flags = set(cpu_flags())
    build = tf.sysconfig.get_build_info()
    return {
        "cpu": {
            "vendor": info.get("vendor_id", info.get("CPU implementer", "unknown")),
            "model": info.get("model name", "unknown"),
            "family": info.get("cpu family", "unknown"),  # with model_id: the micro-architecture (NFD labels it)
            "model_id": info.get("model", "unknown"),
            "isa_level": isa_level(flags),
            "numeric_flags": sorted(flags & set(NUMERIC_FLAGS)),
            "caches": caches(),
        },
        "kernel_isa_cap": os.environ.get("ONEDNN_MAX_CPU_ISA", "none"),
        "tensorflow": {
            "version": tf.__version__,
            "cuda": build.get("cuda_version"),
            "cudnn": build.get("cudnn_version"),
        },
        "gpus": _gpus(),
    }


def class_id(description: dict) -> str:
    """A readable, file-name-safe id: vendor, ISA level, per-core caches, TensorFlow, plus a digest of every fact."""
    identity = _identity(description)
    cpu = identity["cpu"]
    vendor = NFD_VENDORS.get(cpu["vendor"], cpu["vendor"])
    cache = "-".join(f"{name}{size}" for name, size in sorted(cpu["caches"].items()))
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
    name = f"{vendor}-{cpu['isa_level']}-{cache}-tf{description['tensorflow']['version']}-{digest}"
    return re.sub(r"[^a-z0-9.-]+", "-", name.lower())


def _identity(description: dict) -> dict:
    """What makes two machines one class; the model name is for people only (a CPU can be virtualised
    under a generic name), and only the per-core caches count (an L3 size varies with the part, not the core)."""
    cpu = {key: value for key, value in description["cpu"].items() if key != "model"}
    cpu["caches"] = {k: v for k, v in cpu["caches"].items() if k in ("L1d", "L2")}
    gpus = [{k: g.get(k) for k in ("device_name", "compute_capability", "driver")} for g in description["gpus"]]
    return {**description, "cpu": cpu, "gpus": gpus}


def same_class(recorded: dict, current: dict) -> bool:
    return _identity(recorded) == _identity(current)


def node_labels(description: dict) -> dict[str, str]:
    """The NFD label values (NFD_LABELS) of nodes of this class's CPU micro-architecture."""
    cpu = description["cpu"]
    return {"vendor_id": NFD_VENDORS.get(cpu["vendor"], cpu["vendor"]), "family": cpu["family"], "id": cpu["model_id"]}
