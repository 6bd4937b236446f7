"""An executor's options, and the error naming a call that failed: shared by both back ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

from robust_sft.core.config_types import coerce_fields, is_finite_number, require


@dataclass
class ExecutorConfig:
    """Where and how many calls run at once."""

    executor: Literal["local", "ray"] = field(default="local", metadata={
        "help": "local: a process pool on this machine; ray: Ray tasks on a local or existing Ray cluster "
                "(pip install 'robust-sft[ray]')."})
    workers: int = field(default=1, metadata={
        "help": "local: processes (calls at once). ray: at most this many calls submitted at once; 0 submits "
                "them all and lets the cluster's free CPUs/GPUs decide how many run."})
    ray_address: str | None = field(default=None, metadata={
        "help": "ray: unset starts a Ray instance on this machine for the run (and stops it after); 'auto' joins "
                "the cluster started here with `ray start`; 'HOST:6379' or 'ray://HOST:10001' joins that one."})
    cpus_per_unit: float = field(default=1, metadata={
        "help": "ray: CPUs Ray reserves for each call (fractions allowed)."})
    gpus_per_unit: float = field(default=0, metadata={
        "help": "ray: GPUs Ray reserves for each call (0.5 puts two calls on one GPU)."})
    max_retries: int = field(default=2, metadata={
        "help": "ray: reruns of a call whose worker process or node died (not of a call that raised an "
                "error); calls resume from the run directory."})

    def __post_init__(self) -> None:
        coerce_fields(self)  # checks `executor` against its Literal; YAML's `0.5` may arrive as a string
        if self.executor == "local":
            require(self.workers >= 1, f"workers must be at least 1 with the local executor, not {self.workers}"
                    " (workers: 0, no limit, is for executor: ray)")
            require(self.ray_address is None,
                    f"ray_address {self.ray_address!r} is set but executor is local: set executor: ray to use it")
        else:
            require(self.workers >= 0, f"workers must be 0 (no limit) or more, not {self.workers}")
            require(self.ray_address is None or self.ray_address.strip() != "",
                    "ray_address must be unset (start Ray here), 'auto' or an address, not empty")
        require(is_finite_number(self.cpus_per_unit) and self.cpus_per_unit > 0,
                f"cpus_per_unit must be a positive number, not {self.cpus_per_unit}")
        require(is_finite_number(self.gpus_per_unit) and self.gpus_per_unit >= 0,
                f"gpus_per_unit must be 0 or more, not {self.gpus_per_unit}")
        # Never infinite (Ray's -1): a call that keeps killing its worker (out of memory) must end the run.
        require(self.max_retries >= 0, f"max_retries must be 0 or more, not {self.max_retries}")

    def describe(self) -> str:
        """Where calls run, in words (a dry run's plan says it)."""
        if self.executor == "local":
            return "one at a time, in this process" if self.workers == 1 else f"{self.workers} at a time, in processes"
        where = {None: "a Ray instance started here", "auto": "the Ray cluster this machine is in (auto)"}.get(
            self.ray_address, f"the Ray cluster at {self.ray_address}")
        at_once = f"up to {self.workers} at once" if self.workers else "as many at once as free resources allow"
        return (f"as Ray tasks on {where}, {at_once}, each reserving {self.cpus_per_unit:g} CPUs and "
                f"{self.gpus_per_unit:g} GPUs, rerun up to {self.max_retries} times if its worker dies")


class CallFailed(RuntimeError):
    """A call raised (or its worker died past its retries); `index` and `call` say which. The cause is chained."""

    def __init__(self, desc: str, fn: Callable, index: int, call: tuple, error: BaseException) -> None:
        self.index, self.call = index, call
        name = getattr(fn, "__qualname__", repr(fn))
        super().__init__(f"{desc}: call {index + 1} {name}{_short(call)} failed: {type(error).__name__}: "
                         f"{error}")


def _short(call: tuple, limit: int = 60) -> str:
    """The call's arguments, each cut to `limit` characters: a long config must not hide the variant and seed."""
    parts = [text if len(text) <= limit else text[:limit] + "..." for text in map(repr, call)]
    return "(" + ", ".join(parts) + ")"
