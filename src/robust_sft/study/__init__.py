"""`robust-sft study`: the paper's claims across worlds and fine-tuning modes: selection, runs, summary."""

from robust_sft.core.lazy import lazy_exports

_EXPORTS = {
    "StudyConfig": "config",
    "load_study_config": "config",
    "run_study": "runner",
    "publish": "publish",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
