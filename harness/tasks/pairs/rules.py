"""The pairs task's rules on a configuration: what follows from its settings, what contradicts
itself (refused in one line), and what means nothing (dropped from the plan, with the reason)."""

from __future__ import annotations

from typing import Any

from harness.errors import ConfigError
from harness.settings import RunConfig
from harness.tasks.pairs.settings import SINGLE_DIGIT_STAGE, PairsSettings, model_options

DEFAULTS = PairsSettings()


def complete(values: dict[str, Any], where: str) -> dict[str, Any]:
    """The given settings (checked values) with what follows from them: a joint model has one
    encoder (nothing to share) unless weight sharing is given; without transfer there is no
    single-digit stage, so `pretrain_epochs` does not apply. ConfigError for a setting of that
    stage without it."""
    values = dict(values)
    if values.get("pairing", DEFAULTS.pairing) == "joint" and "weight_sharing" not in values:
        values["weight_sharing"] = False
    if values.get("transfer", DEFAULTS.transfer) == "none":
        values["pretrain_epochs"] = None
        for key in SINGLE_DIGIT_STAGE:
            value = values.get(key, getattr(DEFAULTS, key))
            if value != getattr(DEFAULTS, key):
                raise ConfigError(f"{where}: '{key}' = {value!r} acts on the single digits of a transfer "
                                  f"variant's first stage, and transfer = \"none\" has none: set transfer (`rule`, "
                                  f"`frozen`, `finetune`) or remove {key}")
    return values


def why_meaningless(config: RunConfig) -> str | None:
    """Why a combination means nothing (it is dropped from the plan): transfer variants and the
    model family's own check."""
    from architectures import why_invalid

    if config.transfer == "rule" and not config.aux_loss:
        return "transfer 'rule' trains only the digit classifier: it needs aux_loss = true"
    if config.transfer == "frozen" and config.aux_loss:
        return "transfer 'frozen' never updates the encoder, so aux_loss has no effect"
    return why_invalid(config.encoder, model_options(config))
