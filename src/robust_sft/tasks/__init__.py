"""Task registry: `get_task(name)` returns a Task (prompt, reference, extract, check)."""

from robust_sft.tasks.base import Task, TaskError, get_task, list_tasks, register_task

__all__ = ["Task", "TaskError", "get_task", "list_tasks", "register_task"]
