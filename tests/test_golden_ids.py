"""Configuration ids never change: a changed id orphans every stored run of that configuration
(the whole store would train again and old results would no longer pair with new ones)."""

import hashlib
from pathlib import Path

import pytest

from harness.config import RunConfig, expand, load_matrix

ROOT = Path(__file__).resolve().parent.parent

# SHA-256 over the sorted ids of every configuration each committed matrix expands to
MATRICES = {
    "ablations.toml": (152, "e2885b90b4fec1bd5bcc97f2f5c43092e59affe80c0c8412bce7182295869699"),
    # the second search's recipe, its ablations and the options it did not keep; the first
    # search's recipe keeps its id (its stored runs are reused), checked below
    "matrices/best.toml": (13, "564ce47addcf1dbb0e5ed1ce667fe1e3473585e0c899b0806b8d79bc340d5b54"),
    # the 001 presets train on raw pixels and the 004 ones are scored in training mode, as the
    # evidence matrices show those reports did (matrices/repro-001.toml, repro-004.toml); the
    # 003 presets flip a swapped tie's target, as that report words its swap (repro-003.toml)
    "matrices/reports.toml": (22, "e8fe2446552e4f3008e04aec2de4947e3318181c8ee1bf8d54255925373d239e"),
    # the disk task (the course's Project 2): report 002's second chapter and its ablation
    "matrices/reports-p2.toml": (2, "d25e8fc9b03b3a1bc257490de45c0c2533baf20cc318a251769b90f68bf84a70"),
    "matrices/ablations-p2.toml": (7, "0b936caaa9f002f21a2662c27509d8f61b385d335b7fca0210f7471174ce65e2"),
}


@pytest.mark.parametrize("path", sorted(MATRICES))
def test_every_configuration_of_the_committed_matrices_keeps_its_id(path):
    count, digest = MATRICES[path]
    ids = sorted(config.config_id for config in expand(load_matrix(ROOT / path)).configs)
    assert len(ids) == count
    assert hashlib.sha256("".join(ids).encode()).hexdigest() == digest


def test_named_configurations_keep_their_ids():
    best = expand(load_matrix(ROOT / "matrices/best.toml")).configs
    report = expand(load_matrix(ROOT / "matrices/reports.toml")).configs[0]
    assert (best[0].name, best[0].config_id) == ("best", "da5aaf2cab0826ae4b7b1ea57efa293a38a8f0fbe6d61a7468acbe81c577b35e")
    first = next(c for c in best if c.name == "the first search's recipe")
    assert first.config_id == "97be8f7de0ea33ac7512c4067f145eb33ed1557351946bb0fbc8a091e66ce27e"
    assert (report.name, report.config_id) == (
        "000 Linear regression", "f989e8ccb8d233f56fc301e9f933887831a4dbe1cd242681c334ac5b6e5187ae"
    )
    assert RunConfig().config_id == "1c869e89c8294a1ecf3ecc4c150dec42fa6c20a6b0f41033f0d87d87090c7e58"
    assert RunConfig(aux_loss=True).config_id == "83e68affed8e66536af2ffe625f390f20e80aab7386cb2eaf5f23e01b1bd9e97"
