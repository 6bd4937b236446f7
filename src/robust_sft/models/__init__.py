"""Models in one place: loading (the only caller of `from_pretrained`), generation, tiny test models."""

from robust_sft.core.lazy import lazy_exports

_EXPORTS = {
    "load_model": "loading",
    "load_tokenizer": "loading",
    "merge_adapter": "loading",
    "generate": "generation",
    "SamplingConfig": "generation",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
