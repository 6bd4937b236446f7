"""Accuracy on tasks with per-sample logs, the forgetting metrics (TI, BWT), and lm-eval as a back end."""

from robust_sft.core.lazy import lazy_exports

_EXPORTS = {
    "evaluate_task": "engine",
    "evaluate_tasks": "engine",
    "TaskScore": "engine",
    "target_improvement": "metrics",
    "backward_transfer": "metrics",
    "evaluate_with_lm_eval": "harness",
    "EvaluateConfig": "model",
    "evaluate": "model",
    "evaluate_model": "model",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
