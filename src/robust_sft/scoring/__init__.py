"""Token NLL of SFT data under a model -> score files; import of scores made elsewhere; statistics."""

from robust_sft.core.lazy import lazy_exports

_EXPORTS = {
    "ScoreConfig": "token_nll",
    "score": "token_nll",
    "load_scores": "files",
    "Scores": "files",
    "TokenizerMismatchError": "files",
    "ImportScoresConfig": "external",
    "import_scores": "external",
    "summarize": "stats",
    "StatsConfig": "stats",
    "summarize_files": "stats",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
