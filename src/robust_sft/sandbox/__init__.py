"""The runner of untrusted code (a task's generated programs): isolated processes with limits."""

from robust_sft.core.lazy import lazy_exports

_EXPORTS = {
    "run_python": "runner",
    "run_many": "runner",
    "SandboxResult": "runner",
    "detect_isolation": "runner",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
