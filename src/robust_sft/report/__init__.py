"""A run's results, claims, report.md, figures and pages, read from its run directory; the inspect page."""

from robust_sft.core.lazy import lazy_exports

_EXPORTS = {
    "write_report": "write",
    "collect_results": "results",
    "judge_claims": "claims",
    "write_inspect": "inspect",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
