"""On-policy self-distillation (SDFT, arXiv 2601.19897) through TRL's `trl.experimental.sdft.SDFTTrainer`.

The student (the model being tuned) samples its own answer to each training prompt; the teacher is the same base
model with the reference answer in its prompt (the adapter switched off for LoRA/DoRA, a frozen copy for full
fine-tuning); the student is trained, on its own samples, toward the teacher's next-token distribution by the
per-token reverse KL, KL(student || teacher), over the whole vocabulary, averaged over each sample's tokens and
then over the batch (TRL's normalisation: per sequence, not per token). One sample per prompt per step, drawn at
temperature 1 (the student's own distribution). TRL runs it here on the CPU with transformers' `generate` (no
vLLM needed), so the loss is TRL's; we pass our model, LoRA options, schedule and epoch selection.

The teacher's prompt: `sdft_template` over the training prompt and its reference answer, or, per example, a
prompt given whole (`sdft_teacher_prompts`; an experiment writes the target task's own rewrite prompt, the one
Rephrase uses, so a model that learned that prompt reads the reference as it learned to).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from robust_sft.core.artifacts import read_lines
from robust_sft.core.config_types import Options, require
from robust_sft.models.loading import load_causal_lm, resolve_device, resolve_dtype
from robust_sft.scoring.files import load_scores
from robust_sft.training.data import read_example_ids
from robust_sft.training.hooks import EpochMetricMixin

# After the paper's teacher prompt (our wording): the question, the demonstration, a request for the model's own.
SDFT_TEMPLATE = ("{prompt}\n\nThis is an example for a response to the question:\n{reference}\n\n"
                 "Now answer with a response of your own.")


@dataclass(kw_only=True)
class SdftOptions(Options):
    """The options of `--loss sdft` (`train_sdft`)."""

    sdft_template: str = field(default=SDFT_TEMPLATE, metadata={
        "help": "loss sdft: the teacher's user message, from the training prompt {prompt} and its reference answer "
                "{reference}."})
    sdft_teacher_prompts: str | None = field(default=None, metadata={
        "help": "loss sdft: a JSONL file of {id, teacher_prompt} rows, each example's whole teacher message "
                "(`run` writes the target task's own rewrite prompt here); replaces sdft_template."})
    sdft_max_new_tokens: int = field(default=256, metadata={
        "help": "loss sdft: the longest answer the student samples per prompt."})

    def check(self) -> None:
        try:
            self.sdft_template.format(prompt="", reference="")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"sdft_template may hold only the fields {{prompt}} and {{reference}} ({err!r}); "
                             "write a literal brace as {{ or }}") from None
        require("{reference}" in self.sdft_template, "sdft_template must show the teacher the {reference}")
        require(self.sdft_max_new_tokens >= 1, f"sdft_max_new_tokens must be at least 1, not {self.sdft_max_new_tokens}")


def read_teacher_prompts(path: str) -> dict[str, str]:
    """{id: teacher prompt} from a JSONL file; a bad line is an error naming the file and line."""
    prompts = {}
    for lineno, text, problem in read_lines(path):
        where = f"{path}:{lineno}"
        if problem:
            raise ValueError(f"{where}: {problem}")
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except ValueError as err:
            raise ValueError(f"{where}: malformed JSON ({err})") from None
        if not (isinstance(row, dict) and isinstance(row.get("id"), str) and isinstance(row.get("teacher_prompt"), str)):
            raise ValueError(f"{where}: a row needs a string id and a string teacher_prompt")
        prompts[row["id"]] = row["teacher_prompt"]
    return prompts


def sdft_rows(scores, template: str = SDFT_TEMPLATE, teacher_prompts: dict[str, str] | None = None,
              where: str = "scores") -> list[dict]:
    """TRL's SDFT rows from a score file's conversations: the student's `prompt` (the conversation before its last
    reply, which must end with a user turn) and, as `privileged_context`, the teacher's whole user message."""
    rows = []
    for example_id, messages in zip(scores.ids, scores.messages):
        if not messages or messages[-1].get("role") != "assistant" or len(messages) < 2 \
                or messages[-2].get("role") != "user":
            raise ValueError(f"{where}: example {example_id}: sdft needs a conversation that ends with a user turn "
                             "and its reference reply (the score file's messages column)")
        prompt, reference = messages[:-1], messages[-1]["content"]
        if teacher_prompts is not None:
            if example_id not in teacher_prompts:
                raise ValueError(f"{where}: example {example_id} has no teacher prompt in sdft_teacher_prompts")
            teacher = teacher_prompts[example_id]
        else:
            teacher = template.format(prompt=prompt[-1]["content"], reference=reference)
        rows.append({"id": example_id, "prompt": prompt, "privileged_context": teacher})
    return rows


def sdft_trainer(config, tokenizer, args_values: dict, peft_config=None, *, eval_fn=None):
    """TRL's SDFTTrainer for `config` (a TrainConfig with loss sdft; `args_values` the TrainingArguments fields,
    `peft_config` the LoRA/DoRA adapter, None for full fine-tuning), and its data report."""
    import warnings

    import torch
    from datasets import Dataset

    with warnings.catch_warnings():  # "experimental API": known, and pinned (trl==1.16.0, tests/test_weights.py)
        warnings.simplefilter("ignore")
        from trl.experimental.sdft import SDFTConfig, SDFTTrainer
        from trl.experimental.sdft.sdft_trainer import DemonstrationTeacherContextBuilder

    class GivenTeacherPrompt(DemonstrationTeacherContextBuilder):
        """The teacher's user message is given whole (privileged_context) instead of TRL's template over it."""

        def _compose_teacher_prompt(self, prompt, privileged_context):
            return [*prompt[:-1], {"role": "user", "content": privileged_context}]

    class SampledTokenCount(SDFTTrainer):
        """SDFTTrainer that counts the sampled tokens it distils, and sends no telemetry from our runs."""

        sampled_tokens = 0

        def sample_rollouts(self, inputs):
            batch = super().sample_rollouts(inputs)
            if self.model.training:
                self.sampled_tokens += int(batch["completion_mask"].sum())
            return batch

        def _send_telemetry(self):
            pass

    class SdftTrainer(EpochMetricMixin, SampledTokenCount):
        pass

    scores = load_scores(config.data, tokenizer, ids=read_example_ids(config.example_ids))
    teacher_prompts = read_teacher_prompts(config.sdft_teacher_prompts) if config.sdft_teacher_prompts else None
    rows = sdft_rows(scores, config.sdft_template, teacher_prompts, where=config.data)
    dataset = Dataset.from_list([{k: r[k] for k in ("prompt", "privileged_context")} for r in rows])
    dtype = resolve_dtype(config.dtype, resolve_device("auto"))
    model = load_causal_lm(config.model_ref(), torch.float32 if config.finetuning == "full" else dtype)
    args = SDFTConfig(
        **args_values,
        gradient_checkpointing=config.gradient_checkpointing,  # TRL's default is on
        num_generations=1, max_completion_length=config.sdft_max_new_tokens, temperature=1.0,
        max_prompt_length=None,  # never cut a prompt: the student must see what the teacher's reference answers
        teacher_model_kind="base", distillation_mode="full_logits", distillation_alpha=1.0,  # reverse KL
        disable_dropout=False,  # LoRA dropout as in every other method
    )
    trainer = SdftTrainer(model=model, args=args, train_dataset=dataset,
                          eval_dataset=dataset if args.eval_strategy != "no" else None, processing_class=tokenizer,
                          peft_config=peft_config, eval_fn=eval_fn, eval_loss=False)
    trainer.teacher_context_builder = GivenTeacherPrompt(trainer)
    report = {"policy": "sdft", "n_examples": len(rows), "n_dropped_no_trainable_token": 0,
              "answer_tokens": int(sum(m.sum() for m in scores.answer_mask)), "masked_tokens": 0,
              "masked_fraction": 0.0, "teacher": "the base model, reference answer in its prompt",
              "teacher_prompts": "sdft_teacher_prompts" if teacher_prompts is not None else "sdft_template"}
    return trainer, report
