"""What the machine offers: the weights dtype ``auto`` stands for, and the peak memory a run used."""

from __future__ import annotations

import sys

__all__ = ["peak_memory", "torch_dtype"]


def torch_dtype(name: str):
    """``auto``: bfloat16 on a CUDA device that supports it, else float32; otherwise the named dtype."""
    import torch

    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, name)


def peak_memory(device: str = "cuda") -> tuple[int, str]:
    """(bytes, kind): ``torch.cuda.max_memory_allocated`` when ``device`` is a CUDA device that is there
    (``cuda_max_allocated``), else this process's peak resident set size (``cpu_peak_rss``)."""
    try:
        import torch

        if device.startswith("cuda") and torch.cuda.is_available():
            return int(torch.cuda.max_memory_allocated()), "cuda_max_allocated"
    except ImportError:
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024), "cpu_peak_rss"  # macOS: bytes, Linux: KiB
