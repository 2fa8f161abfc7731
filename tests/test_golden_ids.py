"""Configuration ids never change: a changed id orphans every stored run of that configuration
(the whole store would train again and old results would no longer pair with new ones). Every
committed matrix (ablations.toml, matrices/*, examples/*), under each of its profiles, plans to
the configurations it planned to when this was first written: the same ids, the same names,
the same dropped combinations."""

import hashlib
from pathlib import Path

import pytest

from harness.config import expand, load_matrix

ROOT = Path(__file__).resolve().parent.parent

# matrix (and profile) -> configurations, SHA-256 of their sorted ids, SHA-256 of their names in
# plan order, combinations dropped
GOLDEN = {
    "ablations.toml": (152, "e2885b90b4fec1bd5bcc97f2f5c43092e59affe80c0c8412bce7182295869699",
        "c5a30df34f80b12a8f32087079ea1be5429f54c25457684c5be29e229c6f54da", 32),
    "ablations.toml --profile smoke": (152, "f2161d09633e28097fc52442042982da69955e2e2e1a6a7e97052a9fba6197c9",
        "c5a30df34f80b12a8f32087079ea1be5429f54c25457684c5be29e229c6f54da", 32),
    # a user's model: its names no longer show the pairing it does not take ("lenet_siamese siamese ws" before)
    "examples/dropout_study.toml": (8, "9c47b21831937b1d5f4023d930913f439217cb2a4cc99fd43d17722adbabe4b1",
        "a018c04b1cd95da33da7aa380ac0f361ba110a30daf08ee117355e70b07865f2", 0),
    "examples/dropout_study.toml --profile smoke": (8, "778cc16a463839e4c61c258e1774e50f28637af9b06203cfde9f7b57a91f8783",
        "a018c04b1cd95da33da7aa380ac0f361ba110a30daf08ee117355e70b07865f2", 0),
    # ablations.toml by adaptive rounds: its very configurations (rounds are not in the id)
    "matrices/ablations-adaptive.toml": (152, "e2885b90b4fec1bd5bcc97f2f5c43092e59affe80c0c8412bce7182295869699",
        "c5a30df34f80b12a8f32087079ea1be5429f54c25457684c5be29e229c6f54da", 32),
    "matrices/ablations-adaptive.toml --profile smoke": (152, "f2161d09633e28097fc52442042982da69955e2e2e1a6a7e97052a9fba6197c9",
        "c5a30df34f80b12a8f32087079ea1be5429f54c25457684c5be29e229c6f54da", 32),
    "matrices/ablations-fraction.toml": (16, "d051778b9fad534d71df52dc5cdfc0cfc1dfeb37bb807bf1a18d774b4bf9e237",
        "15f8845a8392acb1a904c5395610a50bf80f49eb238ffdf883e7c1f7703d6f16", 0),
    "matrices/ablations-fraction.toml --profile smoke": (16, "d961351673e5359d143dc96514c86e9a1a858cab36bb299f0adf43e9a0cac763",
        "15f8845a8392acb1a904c5395610a50bf80f49eb238ffdf883e7c1f7703d6f16", 0),
    "matrices/ablations-quarter.toml": (76, "32e2a56c46080724924059c8454c2f46fda84edde99f2cec3cafcdb774251adf",
        "24a6055d5e771818bc4194b351f87d8511b920a2b85f8a72bedc3203559ef44e", 16),
    "matrices/ablations-quarter.toml --profile smoke": (76, "b2104e0ac8845058c4ee40adf97b7ae54e852969d245eefdf9a3ce66a8769882",
        "24a6055d5e771818bc4194b351f87d8511b920a2b85f8a72bedc3203559ef44e", 16),
    "matrices/ablations-six.toml": (64, "e0795bba148a04e8ddada6eabb746c7ee05da5c7554be3f112f59d31c14efbd9",
        "7f66b371e8b0a98dce6ca3f7567ef81691dd94768b0e680719d2066810c414ef", 0),
    "matrices/ablations-six.toml --profile smoke": (64, "4209bb4d5508e25d2ffc0d61eab115cc8cf2aba4f35e97dd96dde7fe4f309173",
        "7f66b371e8b0a98dce6ca3f7567ef81691dd94768b0e680719d2066810c414ef", 0),
    "matrices/ablations-p2.toml": (7, "0b936caaa9f002f21a2662c27509d8f61b385d335b7fca0210f7471174ce65e2",
        "0f1ebb00b29dbfb3a84b5d0c7d5b36c8158d5b82616b61aeaae6e2020e8d70c9", 0),
    "matrices/best-search-2.toml": (13, "656e844acd3fc9b2abecd2c2ee135a74cc4a2e0bd53fe2e9a2158db9cd2b4896",
        "7d1733f4b7bb12b7fd4b7737ae759c8cefcdc312c95d7543212b4d21a381af0a", 0),
    "matrices/best-search.toml": (15, "8b6fb8afec246e50ff6756341cf382e934653d67f411e8d7c0519f6cbaec52c8",
        "ee4c397466742c6bfedc6438f2a4c9fa8e08c091a68369d02ac52ec40ad1ed42", 0),
    "matrices/best.toml": (13, "564ce47addcf1dbb0e5ed1ce667fe1e3473585e0c899b0806b8d79bc340d5b54",
        "8c8ddb825dd9f507d2517e00f6e11edacf27735b4bc2553420f9a0ddd54c2507", 0),
    "matrices/best.toml --profile smoke": (12, "f936aafd1311889f4e08378ef65fe23f8f19c4e775a29b4432dd56d73a8d8e2a",
        "d8fa97c301ebd49d2b1fb2355fa548a6ea59f0e2a229f3a3090835a8729995e8", 1),
    "matrices/reports-p2-search.toml": (96, "2fce7a3a6bbd4a91ccc643b27ae5708db8388144e11e2e040aca3b0ac4bb024f",
        "88f4e1c6e0e82065baf696abd2dfce78b3e2259ce674e4221ae66fef499c51ee", 0),
    "matrices/reports-p2.toml": (2, "d25e8fc9b03b3a1bc257490de45c0c2533baf20cc318a251769b90f68bf84a70",
        "3c35fd3fd3bbd67b8194e555fe72301f5de3a8466587c3828d4152f696e06732", 0),
    "matrices/reports.toml": (22, "e8fe2446552e4f3008e04aec2de4947e3318181c8ee1bf8d54255925373d239e",
        "3d4fc155070fbb469f06ea9291f38e17467384667aa735c1119fefe03b49cf38", 0),
    "matrices/reports.toml --profile smoke": (22, "9b7fe12302d04a23721314c3aaa8fc4395427b8d93fa309599ce3286a8b21dde",
        "3d4fc155070fbb469f06ea9291f38e17467384667aa735c1119fefe03b49cf38", 0),
    "matrices/reports.toml --profile check": (22, "912421599d3c904343d34ba74919379260d0615b70112378639b901b0d8cfb44",
        "3d4fc155070fbb469f06ea9291f38e17467384667aa735c1119fefe03b49cf38", 0),
    "matrices/repro-001.toml": (12, "4d2e070111fd746f7cb959de79e7b6df151654fa29fae8d31988d59aa98531cb",
        "ab99b5fc2e2137e4ae9e7c96f4a4bbaa462a79c7a2c2c4341ccd00f0896d75e3", 0),
    "matrices/repro-002-p2.toml": (8, "9f89be20e9b9f4bb4421f016bad41e012f62792421ae61074daeceb693c797f8",
        "168ca02956910fbbff87e2dd995e0967b4c1d035d2b94dcc861f0e925401113a", 0),
    "matrices/repro-002.toml": (12, "81a8a60a6ce7233c3eee70e887bdaf16bfe957df089c6403dfa3b7cd5647515a",
        "4eac151bb48c49f54ac74bec24b9436414266a5851bf58935a3fb23cf81a4515", 0),
    "matrices/repro-003.toml": (10, "c05c8612f4ff874a6f50004969b402eae733bda39829c4a450a562ffedd2273a",
        "14ba5b35d2649cb749d58d4835e3f0af0b99049f8dd1ff1cef7dae5599c6d5a3", 0),
    "matrices/repro-004.toml": (7, "a93b4f701ec87b870e396bbe8289d1d16b77d7d4ed22cf8cb379d62e125ac111",
        "d5e8039bda1b6c6987084c40adead232e0b8bbc0fc9dbc1a2b03fcabfa98a2e9", 0),
}


def committed_matrices() -> list[tuple[str, str | None]]:
    paths = [ROOT / "ablations.toml", *sorted((ROOT / "matrices").glob("*.toml")), *sorted((ROOT / "examples").glob("*.toml"))]
    return [(str(path.relative_to(ROOT)), profile) for path in paths for profile in (None, *load_matrix(path).profiles)]


def test_every_committed_matrix_and_profile_is_in_the_golden_list():
    keys = {path + (f" --profile {profile}" if profile else "") for path, profile in committed_matrices()}
    assert keys == set(GOLDEN), "a matrix or profile was added or removed: give it its golden line"


@pytest.mark.parametrize("key", sorted(GOLDEN))
def test_every_configuration_of_the_committed_matrices_keeps_its_id_and_name(key):
    path, _, profile = key.partition(" --profile ")
    count, ids, names, dropped = GOLDEN[key]
    plan = expand(load_matrix(ROOT / path), profile or None)
    assert len(plan.configs) == count and len(plan.dropped) == dropped
    assert hashlib.sha256("".join(sorted(c.config_id for c in plan.configs)).encode()).hexdigest() == ids
    assert hashlib.sha256("\n".join(c.name for c in plan.configs).encode()).hexdigest() == names


def test_named_configurations_keep_their_ids():
    best = expand(load_matrix(ROOT / "matrices/best.toml")).configs
    report = expand(load_matrix(ROOT / "matrices/reports.toml")).configs[0]
    assert (best[0].name, best[0].config_id) == ("best", "da5aaf2cab0826ae4b7b1ea57efa293a38a8f0fbe6d61a7468acbe81c577b35e")
    first = next(c for c in best if c.name == "the first search's recipe")
    assert first.config_id == "97be8f7de0ea33ac7512c4067f145eb33ed1557351946bb0fbc8a091e66ce27e"
    assert (report.name, report.config_id) == (
        "000 Linear regression", "f989e8ccb8d233f56fc301e9f933887831a4dbe1cd242681c334ac5b6e5187ae"
    )
