"""Building and loading the C++ kernels (``csrc/sparse_kernels.cpp``) with torch's
``cpp_extension``: compiled once per source, flags, torch version and CPU, then loaded from the
cache directory (``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``).
"""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

import torch

_SOURCE = Path(__file__).with_name("csrc") / "sparse_kernels.cpp"
_CFLAGS = ["-O3", "-march=native", "-fopenmp", "-std=c++17"]


def _cpu_tag() -> str:
    """What the compiled code depends on besides its source: the CPU (``-march=native``), torch."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:  # pragma: no cover - not Linux
        pass
    return f"{platform.machine()}|{flags}|{torch.__version__}|{' '.join(_CFLAGS)}"


def build_cpp() -> None:
    """Compile (once per source/flags/torch/CPU; then load from the cache) and register the ops."""
    source = _SOURCE.read_bytes()
    digest = hashlib.sha1(source + _cpu_tag().encode()).hexdigest()[:12]
    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or Path.home() / ".cache" / "torch_extensions")
    build_dir = root / f"lightning_sparse_kernels_{digest}"
    name = "lightning_sparse_kernels"
    library = build_dir / f"{name}.so"
    ready = build_dir / "ready"  # written after a complete build (another process may be linking)
    if ready.exists() and library.exists():
        torch.ops.load_library(str(library))
        return
    build_dir.mkdir(parents=True, exist_ok=True)
    import logging

    # importing cpp_extension warns that no CUDA runtime exists on CPU machines; irrelevant here
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils import cpp_extension

    cpp_extension.load(
        name=name,
        sources=[str(_SOURCE)],
        extra_cflags=_CFLAGS,
        extra_ldflags=["-fopenmp"],
        build_directory=str(build_dir),
        is_python_module=False,
        verbose=False,
    )  # waits on torch's lock while another process builds the same directory
    tmp = build_dir / f"ready.{os.getpid()}"
    tmp.write_text(torch.__version__)
    os.replace(tmp, ready)
