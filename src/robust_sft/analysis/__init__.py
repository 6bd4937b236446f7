"""`robust-sft analyze`: weight updates, KL to the base, loss curves, and their relation to forgetting."""

from robust_sft.core.lazy import lazy_exports

_EXPORTS = {
    "analyze_run": "mechanism",
    "plot_mechanism": "plots",
    "correlations": "mechanism",
    "analysis_units": "mechanism",
    "plot_layer_norms": "plots",
    "plot_loss_curves": "plots",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
