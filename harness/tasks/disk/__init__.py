"""The disk task (the course's Project 2): points drawn in the unit square; is a point inside
the disk of area 1/2 centred at (0.5, 0.5)? A perceptron in minidl (the from-scratch framework)
or in torch.nn.

Its parts: settings.py (its own settings), data.py (the points of a round), rules.py (what
means nothing), training.py (the perceptron, through the protocol), figures.py (its decision
boundaries).
"""

from harness.tasks import TaskSpec
from harness.tasks.disk.settings import DiskSettings

TASK = TaskSpec(
    name="disk",
    help="points drawn in the unit square: inside the disk of area 1/2 centred at (0.5, 0.5)? (the course's Project 2)",
    settings=DiskSettings,
    size_setting="points",
    loader="harness.tasks.disk.data:DiskSource",
    trainer="harness.tasks.disk.training:train_run",
    check="harness.tasks.disk.rules:why_meaningless",
    parameter_count="harness.tasks.disk.training:parameter_count",
    seconds_per_run="harness.tasks.disk.training:seconds_per_run",
    figures="harness.tasks.disk.figures:figures",
)
