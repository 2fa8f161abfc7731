"""The pairs task (the course's Project 1): two MNIST digits, downsampled to 14x14, arrive as
one 2x14x14 tensor; is the first lesser than or equal to the second? The default task.

Its parts: settings.py (its own settings, and the model options derived from them), data.py
(the pair sets, as the course helper makes them), rules.py (what a configuration implies and
what means nothing), training.py (its stages, losses and scores over the generic protocol),
sequential.py and batched.py (its drivers: one model, or rounds and packs as one vectorised
model), augment.py, losses.py, cost.py (`harness plan`'s parameter counts and time estimates).
Its model families are the `architectures` package's.
"""

from harness.tasks import TaskSpec
from harness.tasks.pairs.settings import PairsSettings

TASK = TaskSpec(
    name="pairs",
    help="two MNIST digits as one 2x14x14 tensor: is the first lesser than or equal to the second?",
    settings=PairsSettings,
    size_setting="pairs",
    loader="harness.tasks.pairs.data:load_pair_source",
    trainer="harness.tasks.pairs.sequential:train_run",
    batched_trainer="harness.tasks.pairs.batched:train_rounds",
    packed_trainer="harness.tasks.pairs.batched:train_pack",
    pack_key="harness.tasks.pairs.batched:pack_key",
    complete="harness.tasks.pairs.rules:complete",
    check="harness.tasks.pairs.rules:why_meaningless",
    notes="harness.tasks.pairs.rules:notes",
    user_code="harness.tasks.pairs.rules:runs_user_code",
    parameter_count="harness.tasks.pairs.cost:parameter_count",
    seconds_per_run="harness.tasks.pairs.cost:seconds_per_run",
    chance_error=0.45,  # P(first > second) for uniform digits
)
