"""The stages every unit shares, run once per run directory: the training sets, their scores, the base evaluation."""

from __future__ import annotations

import time
from dataclasses import asdict

from robust_sft.core.artifacts import write_json, write_jsonl
from robust_sft.core.hashing import file_hash, stable_hash
from robust_sft.evaluation.engine import evaluate_tasks
from robust_sft.experiment.plan import SDFT_TEACHER
from robust_sft.experiment.stages import run_stage
from robust_sft.models.loading import load_tokenizer
from robust_sft.scoring.departure import write_departures
from robust_sft.scoring.files import load_scores
from robust_sft.scoring.token_nll import ScoreConfig, score
from robust_sft.tasks.gt_data import gt_rows


def draw_problems(pool: list[str], n: int, seed: int) -> list[str]:
    """`n` problem ids of `pool` drawn by `seed`, in pool order: the first n when ranked by a hash of (seed, id),
    so the draw is the same on every machine and in every process."""
    chosen = set(sorted(pool, key=lambda problem: stable_hash([seed, problem]))[:n])
    return [problem for problem in pool if problem in chosen]


class InputStages:
    """Stages of `Experiment` (runner.py) that make what the (variant, seed) units read: data, scores, base eval."""

    def prepare_data(self) -> None:
        """GT rows from the target task, and generated Self-Output / Rephrase rows (with their seconds, for the report)."""
        from robust_sft.data.synthesis import MAKERS, GenerationSettings, rephrase_prompt, write_generated_data  # torch

        task = self.get_task(self.config.target)
        n_problems = self.config.train_pool or self.config.train_limit  # the same first problems either way
        examples = self.load_examples(self.config.target, "train", n_problems)
        gt_key = stable_hash([self.base_key, self.config.target, n_problems, self.config.task_paths,
                              self.task_versions([self.config.target])])
        gt_path = self.run_dir.data_file("gt")
        run_stage("data gt", gt_path, gt_key, lambda: write_jsonl(gt_path, gt_rows(task, examples)))
        if self.config.train_pool is not None:
            pool = [e["id"] for e in examples]
            for seed in self.config.seeds:
                path = self.run_dir.seed_problems_file(seed)
                run_stage(f"data problems seed {seed}", path, stable_hash([gt_key, seed, self.config.train_limit]),
                          lambda path=path, seed=seed: write_json(path, draw_problems(pool, self.config.train_limit,
                                                                                      seed)))
        if self.hinted_sources():
            hinted_path = self.run_dir.hinted_data_file("gt")
            rows = [{**row, "hint": task.hint(e)} for row, e in zip(gt_rows(task, examples), examples)]
            if all(r["hint"] is None for r in rows):
                raise ValueError(f"method hindsight: task {self.config.target} gives no hint (Task.hint) for its "
                                 "examples; remove hindsight from `methods`")
            # keyed by the rows themselves: a task's hint may live outside the modules its version hashes
            run_stage("data gt hinted", hinted_path, stable_hash([gt_key, rows]), lambda: write_jsonl(hinted_path, rows))
        if "oracle" in self.sources:
            rows = [{"id": e["id"], "prompt": task.prompt(e), "answer": task.oracle_reference(e)} for e in examples]
            missing = [r["id"] for r in rows if r["answer"] is None]
            if missing:
                raise ValueError(f"method oracle: task {self.config.target} wrote no answer in the model's own "
                                 f"style for {len(missing)} example(s), e.g. {missing[0]}")
            oracle_path = self.run_dir.data_file("oracle")
            run_stage("data oracle", oracle_path, stable_hash([gt_key, "oracle"]),
                      lambda: write_jsonl(oracle_path, rows))
        if any(v.method == "sdft" for v in self.variants):
            # The teacher's prompt: the task's own rewrite prompt (Rephrase's), with the reference in it.
            teacher_path = self.run_dir.data_file(SDFT_TEACHER)
            run_stage("data sdft teacher prompts", teacher_path, stable_hash([gt_key, SDFT_TEACHER]),
                      lambda: write_jsonl(teacher_path, [{"id": e["id"], "teacher_prompt": rephrase_prompt(task, e)}
                                                         for e in examples]))
        settings = GenerationSettings(**self.config.generation)
        for source in self.sources:
            if source not in MAKERS:
                continue
            path = self.run_dir.data_file(source)

            key = stable_hash([gt_key, source, asdict(settings)])

            def produce(source=source, path=path, key=key):  # the report beside the rows is the run's data_report_file
                model, tokenizer = self.loaded_base()
                write_generated_data(source, model, tokenizer, task, examples, settings, path, sampler=self.sampler(),
                                     journal_key=key)  # a killed run resumes its sampling batch by batch

            run_stage(f"data {source}", path, key, produce)

    def score_data(self) -> None:
        """The token NLL of every training set under the base model, and the seconds it took (for the report)."""
        for source in self.sources:
            out = self.run_dir.scores_file(source)
            key = stable_hash([self.base_key, file_hash(self.run_dir.data_file(source))])

            def produce(source=source, out=out):
                start = time.perf_counter()
                score(ScoreConfig(model=self.base, data=str(self.run_dir.data_file(source)), out=str(out),
                                  progress=self.progress))
                write_json(self.run_dir.scores_seconds_file(source), {"seconds": time.perf_counter() - start})

            run_stage(f"score {source}", out, key, produce)
        for source in self.hinted_sources():
            self.score_hinted(source)
        for source in sorted({v.source for v in self.variants if v.mask == "keep_departure"}):
            self.find_departures(source)

    def find_departures(self, source: str) -> None:
        """Each example's departure token under the base model (one forward pass each), for keep_departure."""
        scores_path, out = self.run_dir.scores_file(source), self.run_dir.departure_file(source)

        def produce():
            write_departures(self.loaded_base()[0], load_scores(scores_path), out, self.progress)

        run_stage(f"departure {source}", out, stable_hash([self.base_key, file_hash(scores_path), "departure"]),
                  produce)

    def hinted_sources(self) -> list[str]:
        """The training sets a hindsight variant needs scored a second time, with hints (GT only, as it stands)."""
        return sorted({v.source for v in self.variants if v.mask == "hindsight"})

    def score_hinted(self, source: str) -> None:
        """The same answers scored with the hint in the prompt, beside the plain scores: a tau sweep never rescores."""
        data, out = self.run_dir.hinted_data_file(source), self.run_dir.hinted_scores_file(source)

        def produce():
            start = time.perf_counter()
            score(ScoreConfig(model=self.base, data=str(data), out=str(out), hint_field="hint",
                              progress=self.progress))
            write_json(self.run_dir.hinted_scores_seconds_file(source), {"seconds": time.perf_counter() - start})

        run_stage(f"score {source} hinted", out, stable_hash([self.base_key, file_hash(data), "hint"]), produce)

    def evaluate_base(self) -> None:
        out = self.run_dir.base_eval_dir
        key = stable_hash([self.base_key, self.tasks, self.eval_limits(), self.config.task_paths,
                           self.config.backend, self.task_versions(self.tasks)])

        def produce():
            # With vLLM the transformers model is not needed here, and would take GPU memory from vLLM.
            model = self.loaded_base()[0] if self.config.backend == "hf" else None
            evaluate_tasks(model, load_tokenizer(self.base), self.tasks, limit=self.eval_limits(),
                           batch_size=self.config.eval_batch_size, log_dir=out, progress=self.progress,
                           task_paths=self.config.task_paths, sampler=self.sampler(),
                           task_kwargs={t: self.task_kwargs(t) for t in self.tasks})

        run_stage("evaluate base", out, key, produce)
