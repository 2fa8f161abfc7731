"""A backend as a contributor would add one: this module and its registration, nothing else.
Runs every task in the calling process, in order (the shape of a submitit or SLURM backend),
with an option of its own (`--backend-option note=...`)."""

from dataclasses import dataclass

from harness.backends.base import TaskFailed, first_line


@dataclass(frozen=True)
class InlineOptions:
    note: str = ""  # written down, to show that the option arrived
    reversed: bool = False  # run the tasks last to first


class InlineBackend:
    name = "inline"
    Options = InlineOptions
    threads_per_task = 1
    workers = 1

    def __init__(self, options: InlineOptions | None = None):
        self.options = options or InlineOptions()
        self.launched = []
        self.policy = None

    def remote_device(self, requested: str) -> str | None:
        return None

    def start(self, policy) -> None:
        self.policy = policy

    def launch(self, tasks, work, context, setup):
        setup(context)
        for task in reversed(tasks) if self.options.reversed else tasks:
            self.launched.append(task)
            try:
                yield task, work(task, context)
            except Exception as error:  # the task fails alone, with its reason
                yield task, TaskFailed(first_line(error))

    def close(self) -> None:
        pass
