"""The paper's evaluation tasks; importing this module registers them.

Targets: `mbpp`, `math`. Non-target (forgetting) tasks: `gsm8k`, `arc_challenge`. All zero-shot; the engine
applies the chat template to `Task.prompt(example)`.
"""

from robust_sft.tasks.arc import ARCChallenge
from robust_sft.tasks.gsm8k import GSM8K
from robust_sft.tasks.math_task import MATH
from robust_sft.tasks.mbpp import MBPP

PAPER_TASKS = ("mbpp", "math", "gsm8k", "arc_challenge")

__all__ = ["ARCChallenge", "GSM8K", "MATH", "MBPP", "PAPER_TASKS"]
