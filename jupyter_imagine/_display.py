"""Where output goes: whether this process runs inside a Jupyter kernel (widgets can render)."""

from __future__ import annotations

__all__ = ["in_kernel"]


def in_kernel() -> bool:
    """``True`` inside a Jupyter kernel (where widgets can render), else ``False``."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None
