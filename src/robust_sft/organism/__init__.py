"""The model organism: a synthetic multi-task world, a character-level tokenizer and a tiny Llama pretrained
on it in one house style, cached locally. It lets the whole method run end to end on a CPU in minutes.

    from robust_sft.organism import build_base_model, TARGET
    path = build_base_model()          # builds once, then cached (~/.cache/robust-sft/organism/<key>)

Two world versions (organism/versions.py): v4 (`model: organism`, tasks `organism/<task>`) and v5
(`model: organism-v5`, tasks `organism-v5/<task>`; docs/organism_v5.md).
"""

from robust_sft.organism.versions import VERSIONS
from robust_sft.organism.world import NON_TARGET, TARGET, TASKS

# Every world that the demo, the study and the tests use ships in the package (shipped/seed<K>, shipped/v5/seed<K>),
# so no reader's CPU decides their base models; each version lists them (organism/versions.py). v4's:
SHIPPED_WORLDS = VERSIONS["v4"].shipped_worlds


def build_base_model(*args, **kwargs):
    # Imported lazily: torch/transformers are not needed to use the world's tasks.
    from robust_sft.organism.store import build_base_model as build

    return build(*args, **kwargs)


__all__ = ["NON_TARGET", "SHIPPED_WORLDS", "TARGET", "TASKS", "build_base_model"]
