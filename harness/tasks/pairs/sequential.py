"""One run of the pairs task: one configuration, one round, one model. A short driver over
the protocol."""

from __future__ import annotations

import copy
import time

import torch

from harness.device import CPU, DevicePolicy
from harness.results import RunResult, Stage
from harness.settings import RunConfig
from harness.tasks.pairs import training
from harness.tasks.pairs.augment import augment_digits, mix_digits
from harness.tasks.pairs.data import RunData, prepare_data
from harness.tasks.pairs.settings import model_options
from harness.tasks.pairs.training import PairsStage
from harness.training import protocol


def channels_last(config: RunConfig, policy: DevicePolicy) -> bool:
    """Whether a run of `config` trains its convolutions in channels_last (its `layout`)."""
    from architectures.registry import uses_channels_last

    return uses_channels_last(config.encoder, config.layout, policy.channels_last)


def build_model(config: RunConfig, policy: DevicePolicy) -> torch.nn.Module:
    """The configuration's model on the policy's device and layout, from torch's current seed."""
    from architectures import build
    from architectures.layout import to_channels_last

    model = build(config.encoder, model_options(config)).to(policy.device)
    if channels_last(config, policy):
        to_channels_last(model)
    return model


class SingleModel:
    """PairsLearner for one model: tensors without a member dimension."""

    members = 1
    fail_fast = True
    vectorised = False  # its losses run on the model's own tensors

    def __init__(self, config: RunConfig, model: torch.nn.Module, data: RunData, generator: torch.Generator, device,
                 teacher=None):
        self.config, self.model, self.data, self.generator, self.device = config, model, data, generator, device
        self.teacher = teacher  # self-distillation's target (training.teachers_forward), or None
        self.shadow = self.average = None  # the evaluated weights: the model's own, or their average
        if config.ema_decay:
            self.shadow = copy.deepcopy(model)
            weights = lambda m: [*m.parameters(), *m.buffers()]  # noqa: E731
            self.average = protocol.WeightAverage(config.ema_decay, weights(self.shadow), weights(model))

    def examples(self, stage: PairsStage) -> int:
        return len(self.data.digits if stage.name is Stage.PRETRAIN else self.data.train_input)

    def trainable(self, stage: PairsStage):
        if stage.name is Stage.PRETRAIN:
            return self.model.digit_encoder.parameters()
        if stage.frozen_encoder:
            for parameter in self.model.digit_encoder.parameters():
                parameter.requires_grad_(False)
                parameter.grad = None  # left over from pretraining
        return self.model.parameters()

    def optimizer(self, stage: PairsStage):
        return protocol.make_optimizer(self.config, self.trainable(stage), stage.lr_schedule)

    def train_mode(self, stage: PairsStage) -> None:
        training.train_mode(self.model, stage)

    def batches(self, count: int) -> list[torch.Tensor]:
        return protocol.minibatches(count, self.config.batch_size, self.generator, self.device)

    def objective(self, stage: PairsStage, tally: protocol.Tally | None):
        return training.objective(self.config, stage, self, tally)

    def backward(self, losses: torch.Tensor) -> None:
        losses.sum().backward()

    def take(self, name: str, index: torch.Tensor) -> torch.Tensor:
        return getattr(self.data, name)[index]

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        return augment_digits(images, self.config, [self.generator])

    def mix(self, images: torch.Tensor):
        return mix_digits(images, self.config, [self.generator])

    def teach(self, images: torch.Tensor) -> torch.Tensor:
        return self.teacher(images)

    def forward_pairs(self, pairs: torch.Tensor):
        output = self.model(pairs)  # comparison (b, 2), digits (b, 2, 10) or None
        return output.comparison, output.digits

    def forward_digits(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.digit_encoder(images)  # (b, 10)

    def per_member(self, loss):
        return loss

    def loss_groups(self) -> list[tuple[RunConfig, slice]]:
        return [(self.config, slice(None))]

    def after_step(self) -> None:
        if self.average is not None:
            self.average.update()

    def scoring_forward(self) -> training.Forward:
        """The evaluated model (the weights or their average) in scoring mode, as a forward."""
        evaluated = self.model if self.shadow is None else self.shadow
        training.scoring_mode(self.config, evaluated)

        def forward(pairs):
            output = evaluated(pairs)
            return output.comparison, output.digits

        return forward

    def evaluate(self, skip: tuple[str, ...] = ()) -> protocol.Scores:
        return training.score(self.config, self.scoring_forward(), self.data.eval_sets, 1, skip)


TEACHER_MEMBERS = 1000  # teachers' seeds: ensemble member numbers no ensemble reaches


def train_teachers(config: RunConfig, model_seed: int, data: RunData, policy: DevicePolicy):
    """Self-distillation's teachers: `distill_teachers` models of the run's configuration (not
    distilled themselves, one model each), trained on the run's data from their own seeds; their
    averaged softened digit predictions (training.teachers_forward). A teacher that diverges
    fails the run."""
    teacher_config = config.replace(distill_teachers=0, ensemble=1)
    encoders = []
    for teacher in range(config.distill_teachers):
        learner = new_learner(teacher_config, protocol.member_seed(model_seed, TEACHER_MEMBERS + teacher), data, policy)
        protocol.train(teacher_config, training.stages(teacher_config), learner)
        encoders.append((learner.model if learner.shadow is None else learner.shadow).digit_encoder)
    return training.teachers_forward(config, encoders)


def new_learner(config: RunConfig, seed: int, data: RunData, policy: DevicePolicy, teacher=None) -> SingleModel:
    """A model of `config` from `seed` (initialisation and dropout masks through torch's seed;
    minibatch order and augmentation through its own generator), ready to train on `data`."""
    torch.manual_seed(seed)
    return SingleModel(config, build_model(config, policy), data, torch.Generator().manual_seed(seed),
                       policy.torch_device(), teacher)


def train_run(config: RunConfig, round_index: int, source, policy: DevicePolicy = CPU) -> RunResult:
    """Train one configuration for one round and evaluate it; never raises for a failed run.
    `source`: a harness.tasks.pairs.data.PairSource."""
    from architectures import count_parameters

    device = policy.torch_device()
    result = protocol.new_result(config, round_index, policy.device)
    started = time.perf_counter()
    try:
        result.execution = {"channels_last": channels_last(config, policy)}
        data = prepare_data(config, source.pairs(config.pairs, result.data_seed), device)
        members, outcomes = [], []
        with torch.random.fork_rng(devices=policy.rng_devices()):
            teacher = train_teachers(config, result.model_seed, data, policy) if config.distill_teachers else None
            for member in range(config.ensemble):  # one model unless an ensemble is asked
                members.append(new_learner(config, protocol.member_seed(result.model_seed, member), data, policy, teacher))
                outcomes.append(protocol.train(config, training.stages(config), members[-1]))
        result.params = sum(count_parameters(member.model) for member in members)
        outcome = outcomes[0]
        if len(members) > 1:
            forward = training.averaged_forward(config, [member.scoring_forward() for member in members])
            outcome = training.ensemble_outcome(outcomes, training.score(config, forward, data.eval_sets, 1))
        training.finish([config], outcome, [result])
    except Exception as error:  # a failed run is recorded with its reason; the matrix goes on
        result.reason = f"{type(error).__name__}: {error}"
    result.seconds = time.perf_counter() - started
    return result
