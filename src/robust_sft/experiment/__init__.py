"""`robust-sft run`: an experiment's config, its plan of variants, cached stages and (method, seed) units."""

from robust_sft.core.lazy import lazy_exports

_EXPORTS = {
    "ExperimentConfig": "runner",
    "Experiment": "runner",
    "load_config": "runner",
    "run_experiment": "runner",
    "run_demo": "demo",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
