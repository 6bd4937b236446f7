"""Token policies (pure functions over arrays), the soft STM's token weights, export of masked data for TRL /
axolotl, and where a policy's masks fall."""

from robust_sft.core.lazy import lazy_exports

_EXPORTS = {
    "MaskPolicy": "policies",
    "MaskResult": "policies",
    "apply_policy": "policies",
    "write_masked": "export",
    "MaskConfig": "export",
    "MaskOptions": "policies",
    "mask": "export",
    "mask_location": "diagnostics",
    "answer_span_flags": "diagnostics",
    "mask_scores": "inputs",
    "align_hinted": "hindsight",
    "auto_tau": "policies",
    "soft_weights": "weights",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
