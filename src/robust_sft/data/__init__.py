"""Rows -> conversations -> token ids (tokenized once), and the low-perplexity training sets (Self-Output,
Rephrase) made by the model and checked by the task."""

from robust_sft.core.lazy import lazy_exports

_EXPORTS = {
    "read_examples": "examples",
    "tokenize_examples": "examples",
    "DataFormat": "examples",
    "DataError": "examples",
    "GenerationSettings": "synthesis",
    "self_output": "synthesis",
    "rephrase": "synthesis",
    "GenerateConfig": "synthesis",
    "generate": "synthesis",
    "write_generated_data": "synthesis",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
