"""The precision a Lightning trainer actually runs at: bf16 on a CPU without native bf16 falls back to fp32.

PyTorch runs bf16 autocast on any x86 CPU, but without AVX512-BF16 or AMX it emulates the bf16 matrix
products.  Measured on an AVX2-only 2-core EPYC (busy, load 1-6): a ResNet-18 training step on 256 one-channel
112-px crops (``configs/ssl/simclr_cpu_fast.yaml``'s batch of 128 pairs) took 12.4 s in fp32 while bf16
autocast did not finish three such steps in 14 minutes; on 32 crops 10.1 s against 20.7 s.
CPU configs that ask for bf16 (the fast SimCLR
config, the one-hour fine-tuning config) therefore run in ``32-true`` on such CPUs, with a warning; GPUs and
CPUs with native bf16 (or whose flags cannot be read) keep what the config asks for.
"""

from __future__ import annotations

import logging
import platform
from functools import lru_cache
from pathlib import Path

__all__ = ["cpu_has_native_bf16", "effective_precision"]

logger = logging.getLogger(__name__)
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether this x86 CPU has native bf16 (``avx512_bf16`` / ``amx_bf16`` in ``/proc/cpuinfo``); None when
    unknown (no ``/proc/cpuinfo``, not x86)."""
    if cpuinfo is None:
        if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
            return None
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return None
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    if not flags:
        return None
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def _runs_on_cpu(accelerator: str) -> bool:
    if accelerator == "cpu":
        return True
    if accelerator != "auto":
        return False
    import torch

    return not torch.cuda.is_available() and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available())


def effective_precision(precision: str | int | None, accelerator: str = "auto",
                        native_bf16: bool | None = None) -> str | int | None:
    """``precision`` as the trainer should run it: ``bf16-mixed`` / ``bf16-true`` / ``bf16`` on a CPU known to lack
    native bf16 become ``32-true`` (logged once per call at WARNING); anything else is returned unchanged."""
    if not isinstance(precision, str) or not precision.startswith("bf16") or not _runs_on_cpu(str(accelerator)):
        return precision
    native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
    if native is not False:
        return precision
    logger.warning("precision %s asked for on a CPU without native bf16 (no %s): emulated bf16 is about 10x slower "
                   "than fp32 here, so this run uses 32-true", precision, " / ".join(NATIVE_BF16_FLAGS))
    return "32-true"
