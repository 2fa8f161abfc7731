"""A backend as a contributor would add one: this module and one REGISTRY line, nothing else.
Runs every task in the calling process, in order (the shape of a submitit or SLURM backend)."""

from harness.backends.base import TaskFailed, first_line


class InlineBackend:
    name = "inline"
    threads_per_task = 1

    def __init__(self, workers: int = 1):
        self.workers = workers
        self.launched = []

    def start(self) -> None:
        pass

    def launch(self, tasks, work, context, setup):
        setup(context)
        for task in tasks:
            self.launched.append(task)
            try:
                yield task, work(task, context)
            except Exception as error:  # the task fails alone, with its reason
                yield task, TaskFailed(first_line(error))

    def close(self) -> None:
        pass


def create(*, workers: int = 1, **_options) -> InlineBackend:
    return InlineBackend(workers)
