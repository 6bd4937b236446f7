"""One (variant, seed) unit: a fine-tune and its evaluation, reading and writing only the run directory."""

from __future__ import annotations

import logging

from robust_sft.analysis.mechanism import measure_unit
from robust_sft.core.artifacts import dir_lock, write_json
from robust_sft.core.hashing import file_hash, stable_hash
from robust_sft.evaluation.engine import evaluate_task
from robust_sft.evaluation.model import evaluate_model
from robust_sft.experiment.plan import SDFT_TEACHER, Variant, variant_train_options
from robust_sft.experiment.stages import forget_stage, is_done, run_stage
from robust_sft.models.loading import load_tokenizer, trained_model_parts
from robust_sft.training import trainer as training  # called as training.train: tests stand in for it
from robust_sft.training.data import read_example_ids

logger = logging.getLogger(__name__)


class UnitStages:
    """Stages of `Experiment` (runner.py) run per (variant, seed), independent of every other unit."""

    def run_unit(self, variant: Variant, seed: int) -> None:
        """One fine-tuning run and its evaluation: independent of every other unit once data is scored.

        Each unit holds its own lock, so no two processes ever train into the same model directory. A unit
        evaluated with the same key needs no model: its weights may have been removed (a run directory kept or
        committed without them) and nothing is trained again."""
        with dir_lock(self.run_dir.unit_lock_file(variant.name, seed), f"{variant.name} seed {seed}"):
            if is_done(self.run_dir.eval_dir(variant.name, seed), self.evaluation_key(variant, seed)):
                logger.info("[%s seed %d] evaluated: up to date", variant.name, seed)
            else:
                self.train_variant(variant, seed)
                self.evaluate_variant(variant, seed)
            if self.config.analyze_units:
                self.measure_unit(variant, seed)

    def measure_unit(self, variant: Variant, seed: int) -> None:
        """The unit's mechanism measures (analysis/), while its weights exist; a unit evaluated earlier whose
        weights are gone keeps what was measured then, or stays unmeasured (the analysis lists it as skipped)."""
        if not self.run_dir.final_model_dir(variant.name, seed).is_dir():
            logger.info("[%s seed %d] no weights here: not measured", variant.name, seed)
            return
        measure_unit(self.run_dir, variant.name, seed, self.config.kl_limit)

    def train_options(self, variant: Variant, seed: int) -> dict:
        """TrainConfig options of one run: the config's, the variant's, and per-seed ones; sdft samples answers
        as long as the target's evaluation does (unless `train:` says otherwise)."""
        options = variant_train_options(self.config, variant, seed)
        if variant.method == "sdft":
            options.setdefault("sdft_max_new_tokens", self.get_task(self.config.target).max_new_tokens)
        return options

    def train_key(self, variant: Variant, seed: int) -> str:
        # The target's checker picks the best epoch, so its version is part of the trained model's key.
        key = [self.base_key, file_hash(self.run_dir.scores_file(variant.source)), variant.name, seed,
               self.train_options(variant, seed), self.config.select_best_epoch,
               self.config.validation_limit, self.config.task_paths, self.task_versions([self.config.target])]
        # Appended only where they exist: the keys of every other variant stay as they were.
        if variant.mask == "hindsight":
            key.append(file_hash(self.run_dir.hinted_scores_file(variant.source)))
        if variant.method == "sdft":  # its teacher's prompts
            key.append(file_hash(self.run_dir.data_file(SDFT_TEACHER)))
        if self.config.train_pool is not None:  # this seed's draw of problems
            key.append(file_hash(self.run_dir.seed_problems_file(seed)))
        if variant.mask == "keep_departure":  # where each answer departs
            key.append(file_hash(self.run_dir.departure_file(variant.source)))
        if variant.method == "style_only":  # which problems Self-Output solved
            key.append(file_hash(self.run_dir.data_file("self_output")))
        return stable_hash(key)

    def write_style_only_ids(self, seed: int) -> None:
        """Write (atomically) the ids style_only trains on: the GT problems Self-Output kept, within this seed's
        draw of problems when there is one (run when the unit trains: Self-Output's data exists by then)."""
        solved = self.run_dir.data_ids("self_output")
        if self.config.train_pool is not None:
            drawn = set(read_example_ids(str(self.run_dir.seed_problems_file(seed))))
            solved = [i for i in solved if i in drawn]
        if not solved:
            raise ValueError(f"style_only: Self-Output solved none of the target's training problems "
                             f"({self.run_dir.data_file('self_output')}), so there is nothing to train on")
        write_json(self.run_dir.style_only_ids_file(seed), solved)

    def policy_inputs(self, variant: Variant) -> dict:
        """TrainConfig options naming what a policy reads besides the scores: the hinted scores, the span task."""
        if variant.mask == "hindsight":
            return {"hinted_scores": str(self.run_dir.hinted_scores_file(variant.source))}
        if variant.mask == "answer_aware":
            return {"span_task": self.config.target}
        if variant.mask == "keep_departure":
            return {"departure_file": str(self.run_dir.departure_file(variant.source))}
        return {}

    def train_config(self, variant: Variant, seed: int, base: str):
        extra = {"sdft_teacher_prompts": str(self.run_dir.data_file(SDFT_TEACHER))} if variant.method == "sdft" else {}
        if self.config.train_pool is not None:
            extra["example_ids"] = str(self.run_dir.seed_problems_file(seed))
        if variant.method == "style_only":
            extra["example_ids"] = str(self.run_dir.style_only_ids_file(seed))
        return training.TrainConfig(model=base, data=str(self.run_dir.scores_file(variant.source)),
                           output_dir=str(self.run_dir.model_dir(variant.name, seed)), seed=seed,
                           progress=self.progress, **self.train_options(variant, seed), **self.policy_inputs(variant),
                           **extra)

    def train_variant(self, variant: Variant, seed: int) -> None:
        out = self.run_dir.model_dir(variant.name, seed)
        if not self.run_dir.final_model_dir(variant.name, seed).is_dir():
            forget_stage(out)  # its weights were removed before it was evaluated: train it again

        def produce():
            config = self.train_config(variant, seed, self.base)
            if variant.method == "style_only":
                self.write_style_only_ids(seed)
            if any(out.glob("checkpoint-*")):
                config.resume_from_checkpoint = "latest"  # this stage was killed after saving an epoch
            # answer_aware: the target task as this run builds it (the world a name alone would not carry)
            task = {"task": self.get_task(self.config.target)} if variant.mask == "answer_aware" else {}
            if not self.config.select_best_epoch:
                training.train(config, **task)
                return
            training.train(config, eval_fn=self.validation_accuracy_fn(), best_metric="accuracy", greater_is_better=True,
                           **task)

        run_stage(f"train {variant.name} seed {seed}", out, self.train_key(variant, seed), produce)

    def validation_accuracy_fn(self):
        """Target-task validation accuracy (greedy), evaluated at each epoch end to pick the best epoch."""
        task = self.get_task(self.config.target)
        examples = self.load_examples(self.config.target, "validation", self.config.validation_limit)
        tokenizer = load_tokenizer(self.base)

        def accuracy(model) -> dict:
            was_training = model.training
            model.eval()
            score = evaluate_task(model, tokenizer, task, examples, batch_size=self.config.eval_batch_size,
                                  progress=False)
            model.train(was_training)
            return {"accuracy": score.accuracy}

        return accuracy

    def evaluation_key(self, variant: Variant, seed: int) -> str:
        return stable_hash([self.train_key(variant, seed), self.tasks, self.eval_limits(),
                            self.config.task_paths, self.config.backend, self.task_versions(self.tasks)])

    def evaluate_variant(self, variant: Variant, seed: int) -> None:
        out = self.run_dir.eval_dir(variant.name, seed)
        key = self.evaluation_key(variant, seed)

        def produce():
            model, adapter = trained_model_parts(self.base, self.run_dir.final_model_dir(variant.name, seed))
            evaluate_model(model, self.tasks, adapter=adapter, tokenizer=self.base, backend=self.config.backend,
                           merge=True, progress=self.progress, limit=self.eval_limits(),
                           batch_size=self.config.eval_batch_size, log_dir=out, task_paths=self.config.task_paths,
                           task_kwargs={t: self.task_kwargs(t) for t in self.tasks})

        run_stage(f"evaluate {variant.name} seed {seed}", out, key, produce)

