"""Writing masked, pre-tokenized training data for other trainers.

The output has the columns `input_ids`, `attention_mask`, `labels` (-100 on the prompt and on masked
tokens). TRL's SFTTrainer uses a dataset with `input_ids` as pre-tokenized and keeps a `labels` column as
it is; axolotl takes it as a custom pre-tokenized dataset (no `type:` in the dataset entry). Labels are 0/1
(trained or not): the soft STM's weights cannot travel in this format, so `--soft_temperature` is refused here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from robust_sft.core.artifacts import check_output_file, check_replaceable, library_versions, replace_dir, write_parquet
from robust_sft.core.config_types import require_suffix
from robust_sft.masking.inputs import mask_scores
from robust_sft.masking.policies import MaskOptions, MaskPolicy
from robust_sft.masking.weights import NO_WEIGHTS_IN_EXPORT, SoftWeightOption
from robust_sft.scoring.files import load_scores

# Written into every save_to_disk output: the mark that lets a later `mask --out` replace that directory.
MARKER = "robust_sft.json"


def masked_table(scores, result, keep_id: bool = False):
    import pyarrow as pa

    columns = {}
    if keep_id:
        columns["id"] = pa.array([scores.ids[i] for i in result.keep_examples], pa.string())
    columns["input_ids"] = pa.array([scores.input_ids[i] for i in result.keep_examples], pa.list_(pa.int32()))
    columns["attention_mask"] = pa.array(
        [[1] * len(scores.input_ids[i]) for i in result.keep_examples], pa.list_(pa.int8())
    )
    columns["labels"] = pa.array(result.labels, pa.list_(pa.int64()))
    return pa.table(columns)


def write_masked(
    scores_path: str, out: str, policy: MaskPolicy, *, dpf_scores: str | None = None, keep_id: bool = False,
    hinted_scores: str | None = None, span_task=None, departure_file: str | None = None,
) -> dict:
    """Apply `policy` to a score file and write the masked dataset (.parquet file or save_to_disk dir).

    hinted_scores: hindsight's second score file; span_task: answer_aware's task (a name or a Task);
    departure_file: keep_departure's departure tokens.
    A directory output replaces only a directory an earlier `mask` wrote (it holds MARKER); anything else is refused.
    The labels are 0/1 masks: TRL and axolotl take them as they are.
    """
    as_parquet = str(out).endswith(".parquet")
    if as_parquet:
        check_output_file(out)
    else:
        check_replaceable(out, MARKER)
    scores = load_scores(scores_path)
    result = mask_scores(scores, policy, where=str(scores_path), dpf_scores=dpf_scores, hinted_scores=hinted_scores,
                         task=span_task, departure_file=departure_file)
    if not result.keep_examples:
        raise ValueError(f"{scores_path}: no example keeps a trainable token under this policy; nothing written "
                         f"({result.report})")
    table = masked_table(scores, result, keep_id)
    metadata = {
        "format": "robust-sft/masked/v1",
        "source_scores": str(scores_path),
        "model": scores.metadata.get("model"),
        "tokenizer_fingerprint": scores.metadata.get("tokenizer_fingerprint"),
        "mask_report": result.report,
        "versions": library_versions(),
    }
    if as_parquet:
        write_parquet(out, table, metadata)
    else:
        _save_to_disk(table, Path(out), metadata)
    return result.report


def _save_to_disk(table, out: Path, metadata: dict) -> None:
    import json
    import shutil
    import tempfile

    import datasets

    dataset = datasets.Dataset(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        dataset.save_to_disk(str(tmp / "data"))
        (tmp / "data" / MARKER).write_text(json.dumps(metadata, indent=2))
        replace_dir(tmp / "data", out, MARKER)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass(kw_only=True)
class MaskConfig(MaskOptions, SoftWeightOption):
    """Options of `robust-sft mask SCORES --tau 2.5 --out F`."""

    scores: str = field(metadata={"help": "Score file from `robust-sft score`."})
    out: str = field(
        metadata={"help": "Output: a .parquet file, or a directory (datasets save_to_disk). Columns input_ids, "
                  "attention_mask, labels: TRL's SFTTrainer and axolotl take it as a pre-tokenized dataset."}
    )
    keep_id: bool = field(default=False, metadata={"help": "Also write an id column (axolotl wants exactly three)."})

    def check(self) -> None:
        require_suffix("out", self.out, (".parquet", ""), "a .parquet file or a directory (no extension)")
        if self.soft_temperature is not None:
            raise ValueError(f"soft_temperature: {NO_WEIGHTS_IN_EXPORT}. Train with `robust-sft train --data "
                             f"{self.scores} --mask none --tau {self.tau:g} --soft_temperature "
                             f"{self.soft_temperature:g}` (it weighs the tokens itself), or export STM's 0/1 mask "
                             "without --soft_temperature")


def mask(config: MaskConfig) -> dict:
    """`robust-sft mask`: the policy's masked dataset written to `config.out`; returns what the policy did."""
    return write_masked(config.scores, config.out, config.policy(), dpf_scores=config.dpf_scores,
                        keep_id=config.keep_id, hinted_scores=config.hinted_scores, span_task=config.span_task,
                        departure_file=config.departure_file)
