"""One trainer for every method: `TrainConfig` + `train()`, token losses as free functions, checkpoints."""

from robust_sft.core.lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": "config",
    "train": "trainer",
    "collate": "data",
    "token_loss": "losses",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
