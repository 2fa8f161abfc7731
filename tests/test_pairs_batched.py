"""The pairs task's batched driver (harness.tasks.pairs.batched) against its sequential one:
the same protocol, two ways of running it; packs of configurations that differ in the loss."""

import math

import pytest
import torch
from fixtures import run_config

from harness.config import expand, load_matrix
from harness.device import policy_for
from harness.mnist import load_mnist
from harness.runner import run_plan
from harness.store import Store
from harness.tasks.pairs.augment import augment_digits
from harness.tasks.pairs.batched import Members, pack_key, train_pack, train_rounds
from harness.tasks.pairs.data import PairSource
from harness.tasks.pairs.sequential import train_run
from harness.training.protocol import minibatches

SMALL = {"epochs": 2, "pairs": 100, "batch_size": 25, "pretrain_epochs": 2}
EQUIVALENT = [
    {"encoder": "mlp", "pairing": "joint"},
    {"encoder": "cnn", "aux_loss": True, "batch_norm": True},
    {"encoder": "cnn", "weight_sharing": False, "aux_loss": True},
    {"encoder": "cnn", "aux_loss": True, "batch_norm": True, "transfer": "finetune"},
    {"encoder": "cnn", "batch_norm": True, "transfer": "frozen", "swap_augment": True},
    {"encoder": "cnn", "aux_loss": True, "batch_norm": True, "transfer": "rule", "augment_shift": 1,
     "augment_rotate": 10.0, "lr_schedule": "onecycle", "ema_decay": 0.9, "test_time_augment": True,
     "label_smoothing": 0.1, "validation": 20},
    {"encoder": "savary_cnn", "aux_loss": True},
    {"encoder": "cnn", "aux_loss": True, "batch_norm": True, "score_in_train_mode": True},
    {"encoder": "cnn", "batch_norm": True, "transfer": "rule", "augment_scale": 0.1, "augment_shear": 10.0,
     "augment_elastic": 0.5, "augment_erase": 0.5, "digit_mix": "mixup", "mix_alpha": 0.4},
    {"encoder": "cnn", "batch_norm": True, "transfer": "finetune", "aux_loss": True, "digit_mix": "cutmix"},
]


@pytest.fixture
def source(fake_mnist):
    return PairSource(load_mnist())


@pytest.mark.slow
@pytest.mark.parametrize("settings", EQUIVALENT, ids=lambda s: run_config(**{**SMALL, **s}).name)
def test_batched_rounds_train_as_their_sequential_runs(source, settings):
    config = run_config(**{**SMALL, **settings})
    rounds = [0, 1, 2]
    batched = train_rounds(config, rounds, source)
    for round_index, together in zip(rounds, batched):
        alone = train_run(config, round_index, source)
        assert alone.status == together.status == "done", (alone.reason, together.reason)
        assert (together.round, together.data_seed, together.model_seed) == (alone.round, alone.data_seed, alone.model_seed)
        assert together.params == alone.params
        assert [(r["stage"], r["epoch"]) for r in together.epochs] == [(r["stage"], r["epoch"]) for r in alone.epochs]
        # same data, initial weights and order: only float summation order differs
        for mine, theirs in zip(together.epochs, alone.epochs):
            assert math.isclose(mine["train_loss"], theirs["train_loss"], rel_tol=2e-3), (mine, theirs)
        for key, value in alone.metrics.items():
            if value is None or key == "train_loss":
                assert together.metrics[key] is None or key == "train_loss"
            else:
                # a prediction near the boundary may flip: up to one pair of the 20 held out
                assert abs(together.metrics[key] - value) <= 0.05 + 1e-9, (key, together.metrics[key], value)


def test_members_draw_the_minibatch_order_and_augmentation_of_their_runs():
    config = run_config(augment_shift=2, augment_rotate=15.0, batch_size=7)
    sequential, batched = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)

    class Stub:  # a one-member Members with that generator
        augment, batches = Members.augment, Members.batches

        def __init__(self):
            self.config, self.generators, self.device = config, [batched], torch.device("cpu")

    for _ in range(3):  # three epochs from one generator
        expected = minibatches(30, 7, sequential, "cpu")
        assert all(torch.equal(a[0], b) for a, b in zip(Stub().batches(30), expected))
    images = torch.randn(4, 2, 14, 14)
    one = augment_digits(images, config, [sequential])
    assert torch.equal(Stub().augment(images[None])[0], one)
@pytest.mark.slow
def test_a_diverging_member_fails_alone(source, monkeypatch):
    import harness.tasks.pairs.batched as batched_module

    config = run_config(**{**SMALL, "encoder": "cnn", "aux_loss": True})
    healthy = train_rounds(config, [0, 1, 2], source)
    original = batched_module.stack_module_state

    def poisoned(models):
        params, buffers = original(models)
        first = next(iter(params.values()))
        with torch.no_grad():
            first[1].fill_(float("nan"))  # round 1's first layer
        return params, buffers

    monkeypatch.setattr(batched_module, "stack_module_state", poisoned)
    results = train_rounds(config, [0, 1, 2], source)
    assert [r.status for r in results] == ["done", "failed", "done"]
    assert "non-finite loss" in results[1].reason and "epoch 1" in results[1].reason
    assert results[1].metrics == {}  # a diverged member has no error values to show
    for position in (0, 2):  # the others are untouched by the failed member
        assert results[position].metrics == healthy[position].metrics
@pytest.mark.slow
def test_dropout_members_train_with_their_own_masks(source):
    config = run_config(**{**SMALL, "encoder": "mlp", "dropout": 0.5})
    results = train_rounds(config, [0, 0], source)  # the same round twice: only dropout can differ
    assert all(r.status == "done" for r in results)
    assert results[0].epochs[0]["train_loss"] != results[1].epochs[0]["train_loss"]
@pytest.mark.slow
def test_run_plan_batched_stores_every_round_and_resumes(fake_mnist, tmp_path):
    path = tmp_path / "m.toml"
    path.write_text("[defaults]\nepochs = 1\nrounds = 3\npairs = 100\nbatch_size = 25\n[matrix]\nencoder = ['mlp', 'cnn']\n")
    plan = expand(load_matrix(path))
    with Store(tmp_path / "b.sqlite") as store:
        summary = run_plan(plan, store, policy=policy_for("cpu", workers=1, batched=True))
        frame = store.runs()
    assert summary.finished == 6 and not summary.failed
    assert sorted(frame["round"]) == [0, 0, 1, 1, 2, 2]
    with Store(tmp_path / "s.sqlite") as store:
        run_plan(plan, store, policy=policy_for("cpu", workers=1, batched=False))
        sequential = store.runs()
    merged = frame.merge(sequential, on=["config_id", "round"], suffixes=("_b", "_s"))
    assert len(merged) == 6
    assert ((merged["test_error_b"] - merged["test_error_s"]).abs() <= 0.03).all()
    with Store(tmp_path / "b.sqlite") as store:
        store_path = tmp_path / "b.sqlite"
        assert run_plan(plan, store, policy=policy_for("cpu", workers=1, batched=True)).already_done == 6, store_path


# --------------------------------------------------------------------------- packs (--pack)


def test_configurations_differing_only_in_the_pair_loss_share_a_pack_key():
    base = {**SMALL, "encoder": "cnn", "batch_norm": True}
    key = pack_key(run_config(**base))
    assert pack_key(run_config(**{**base, "aux_loss": True})) == key
    assert pack_key(run_config(**{**base, "aux_loss": True, "aux_weight": 0.5})) == key
    assert pack_key(run_config(**{**base, "lr": 1e-2})) != key  # the schedule differs
    assert pack_key(run_config(**{**base, "swap_augment": True})) != key  # twice the training pairs
    assert pack_key(run_config(**{**base, "dropout": 0.25})) != key  # another layer
    # a family that does not declare the aux loss loss-only builds other layers for it (poulsen's head)
    poulsen = {**SMALL, "encoder": "poulsen_clenet"}
    assert pack_key(run_config(**poulsen)) != pack_key(run_config(**{**poulsen, "aux_loss": True}))
    ensemble = run_config(**{**base, "ensemble": 2})
    assert pack_key(ensemble) == ensemble.config_id


def test_a_family_declares_only_fields_of_the_model_options():
    from architectures import register

    with pytest.raises(ValueError, match="loss_only names no ModelOptions field: aux"):
        register("packing_typo", loss_only=("aux",))(lambda options: torch.nn.Identity())
@pytest.mark.slow
def test_a_pack_trains_each_configuration_as_its_own_batched_group(source):
    plain = run_config(**{**SMALL, "encoder": "cnn", "batch_norm": True})
    aux = run_config(**{**SMALL, "encoder": "cnn", "batch_norm": True, "aux_loss": True, "aux_weight": 0.5})
    jobs = [(aux, 0), (aux, 1), (plain, 0), (plain, 1)]
    packed = train_pack(jobs, source)
    alone = train_rounds(aux, [0, 1], source) + train_rounds(plain, [0, 1], source)
    for (config, round_index), mine, theirs in zip(jobs, packed, alone):
        assert mine.status == theirs.status == "done", (mine.reason, theirs.reason)
        assert (mine.config_id, mine.round, mine.model_seed) == (config.config_id, round_index, theirs.model_seed)
        for a, b in zip(mine.epochs, theirs.epochs):
            assert math.isclose(a["train_loss"], b["train_loss"], rel_tol=2e-3), (a, b)
        for key, value in theirs.metrics.items():
            if value is None or key == "train_loss":
                assert mine.metrics[key] is None or key == "train_loss"  # no digit error without aux
            else:
                assert abs(mine.metrics[key] - value) <= 0.05 + 1e-9, (key, mine.metrics[key], value)
    # each member's loss is its own configuration's: with the aux loss it is larger
    assert packed[0].epochs[0]["train_loss"] > packed[2].epochs[0]["train_loss"]
    assert packed[0].metrics["test_digit_error"] is not None and packed[2].metrics["test_digit_error"] is None
    with pytest.raises(ValueError, match="differ in more than the pair loss"):
        train_pack([(plain, 0), (run_config(**{**SMALL, "encoder": "mlp"}), 0)], source)
@pytest.mark.slow
def test_packed_tasks_hold_every_job_once_and_the_store_records_the_pack(fake_mnist, tmp_path):
    from harness.runner import make_tasks

    plan = expand(load_matrix(_write(tmp_path, """
[defaults]
epochs = 1
pairs = 100
batch_size = 25
rounds = 3
encoder = "cnn"
[matrix]
aux_loss = [false, true]
batch_norm = [false, true]
""")))
    tasks = make_tasks(plan.jobs, batched=True, workers=1, pack=True)
    assert len(tasks) == 2 and all(len(task.jobs()) == 6 for task in tasks)  # aux off and on together
    assert sorted((j.config.config_id, j.round) for t in tasks for j in t.jobs()) == \
        sorted((j.config.config_id, j.round) for j in plan.jobs)
    assert len(make_tasks(plan.jobs, batched=True, workers=1)) == 4  # without --pack: a configuration each
    split = make_tasks(plan.jobs, batched=True, workers=4, pack=True)  # more workers than packs: shared out
    assert len(split) == 4 and sum(len(t.jobs()) for t in split) == 12
    with Store(tmp_path / "s.sqlite") as store:
        summary = run_plan(plan, store, policy=policy_for("cpu", workers=1, pack=True))
        runs = store.runs()
    assert summary.finished == 12 and not summary.failed
    assert sorted(runs["config_id"].unique()) == sorted({c.config_id for c in plan.configs})
    assert all('"pack": true' in record and '"batched": true' in record for record in runs["execution"])


def _write(folder, text):
    path = folder / "matrix.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("members", "examples", "classes"), [(10, 1, 2), (10, 100, 2), (3, 90, 10), (20, 200, 10)])
def test_the_vectorised_cross_entropy_is_vmaps_own_bit_for_bit(members, examples, classes):
    """Under vmap, F.cross_entropy goes through torch's Python decomposition of nll_loss; the
    loss written as the natively batched operations it comes to gives the same numbers to the
    last bit, forward and backward (a torch whose decomposition changes fails here)."""
    import torch.nn.functional as F
    from torch.func import vmap

    from harness.training.protocol import cross_entropy

    generator = torch.Generator().manual_seed(members * examples + classes)
    logits = torch.randn(members, examples, classes, generator=generator) * 3
    target = torch.randint(0, classes, (members, examples), generator=generator)
    weights = torch.randn(members, generator=generator)

    def loss_and_gradient(loss):
        tensor = logits.clone().requires_grad_()
        values = vmap(loss)(tensor, target)  # (members,)
        (values * weights).sum().backward()
        return values, tensor.grad

    theirs = loss_and_gradient(lambda x, t: F.cross_entropy(x, t))
    mine = loss_and_gradient(lambda x, t: cross_entropy(x, t, vectorised=True))
    assert torch.equal(mine[0], theirs[0]) and torch.equal(mine[1], theirs[1])
    smoothed = loss_and_gradient(lambda x, t: cross_entropy(x, t, 0.1, vectorised=True))  # F.cross_entropy's
    assert torch.equal(smoothed[0], loss_and_gradient(lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1))[0])


@pytest.mark.slow
def test_each_driver_tells_its_losses_whether_they_run_under_vmap(source, monkeypatch):
    """The batched driver's losses (pair, aux, pretraining) take the vectorised cross-entropy, a
    sequential run's F.cross_entropy itself."""
    import harness.tasks.pairs.losses as losses
    from harness.training import protocol

    calls = []
    original = protocol.cross_entropy

    def recorded(logits, target, smoothing=0.0, *, vectorised=False):
        calls.append(vectorised)
        return original(logits, target, smoothing, vectorised=vectorised)

    monkeypatch.setattr(protocol, "cross_entropy", recorded)
    monkeypatch.setattr(losses, "cross_entropy", recorded)
    config = run_config(**{**SMALL, "epochs": 1, "pretrain_epochs": 1, "encoder": "cnn", "aux_loss": True,
                           "transfer": "finetune"})
    train_rounds(config, [0, 1], source)
    assert calls and all(calls)
    calls.clear()
    train_run(config, 0, source)
    assert calls and not any(calls)
