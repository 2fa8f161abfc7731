"""The pairs task's rules on a configuration: what follows from its settings, what contradicts
itself (refused in one line), and what means nothing (dropped from the plan, with the reason)."""

from __future__ import annotations

from typing import Any

from harness.errors import ConfigError
from harness.registry import suggest
from harness.settings import COMMON, INAPPLICABLE, RunConfig, check_value, declare
from harness.tasks.pairs.settings import (
    SINGLE_DIGIT_STAGE,
    PairsSettings,
    model_options,
    reference_of,
)

DEFAULTS = PairsSettings()


def complete(values: dict[str, Any], where: str) -> dict[str, Any]:
    """The given settings (checked values) with what follows from them: a user's model takes
    the defaults its constructor gives to the settings it names (unless they are given), so
    that it runs as written and its name says so; a joint model has one encoder (nothing to
    share) unless weight sharing is given; without transfer there is no single-digit stage, so
    `pretrain_epochs` does not apply. ConfigError for a setting of that stage without it, and
    for a model_args reference ("$name") to no setting."""
    values = {**adopted(values, where), **values}
    values[INAPPLICABLE] = not_taken(values.get("encoder", DEFAULTS.encoder))
    for key, value in (values.get("model_args") or {}).items():
        name = reference_of(value)
        known = {**COMMON, **declare(PairsSettings)}
        if name is not None and name not in known:
            raise ConfigError(f"{where}: model_args.{key} = {value!r}: no setting '{name}'{suggest(name, known)} "
                              "(a \"$name\" value passes that setting's value)")
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


def not_taken(encoder: str) -> frozenset[str]:
    """The structural options a user's model does not take: they mean nothing for it, and its
    name leaves them out (a built-in family takes them all)."""
    from architectures.registry import settings_not_taken

    return settings_not_taken(encoder)


def adopted(values: dict[str, Any], where: str) -> dict[str, Any]:
    """The defaults a user's model gives to the settings its constructor names, where the
    setting can hold them (a default it cannot hold leaves the setting's own, which is passed)."""
    from architectures.external import adopted_defaults
    from architectures.registry import family

    chosen = family(values.get("encoder", DEFAULTS.encoder))
    if not chosen.user:
        return {}
    own = declare(PairsSettings)
    taken = {}
    for name, default in adopted_defaults(chosen.origin).items():
        try:
            taken[name] = check_value(own, name, default, where)
        except ConfigError:
            continue
    return taken


def why_meaningless(config: RunConfig) -> str | None:
    """Why a combination means nothing (it is dropped from the plan): transfer variants, the
    model family's own check, and what a user's model lacks for the combination (digit outputs
    for the aux loss, a digit encoder for transfer), found by calling it once (architectures.
    external.probe). ConfigError in one line for a user's model that breaks the contract."""
    from architectures import why_invalid

    if config.transfer == "rule" and not config.aux_loss:
        return "transfer 'rule' trains only the digit classifier: it needs aux_loss = true"
    if config.transfer == "frozen" and config.aux_loss:
        return "transfer 'frozen' never updates the encoder, so aux_loss has no effect"
    reason = why_invalid(config.encoder, model_options(config))
    if reason:
        return reason
    probe = checked_model(config)
    if probe is None:
        return None
    if config.aux_loss and probe.heads == 0 and config.transfer != "rule":
        return f"{config.encoder} returns no digit logits, only the comparison: aux_loss needs them"
    if config.transfer != "none" and not probe.digit_encoder:
        return (f"{config.encoder} has no digit_encoder (one digit (b, 1, 14, 14) to (b, 10) logits): "
                f"transfer '{config.transfer}' pretrains one")
    return None


def checked_model(config: RunConfig):
    """The plan-time check of a configuration's user model (None for a built-in family);
    ConfigError in one line, naming the model, when it breaks the contract."""
    from architectures.external import ContractError
    from architectures.registry import check_user_model, uses_channels_last

    try:
        return check_user_model(config.encoder, model_options(config),
                                uses_channels_last(config.encoder, config.layout, True))
    except ContractError as error:
        raise ConfigError(f"model check: {error}") from None


def notes(config: RunConfig) -> list[str]:
    """What `harness plan` and `harness run` say about a configuration's user model (outputs
    that look like probabilities, auxiliary heads averaged)."""
    probe = checked_model(config)
    return list(probe.notes) if probe is not None else []


def runs_user_code(config: RunConfig) -> bool:
    """Whether a configuration's model is anything but a built-in family of architectures
    (a user's class or factory, a plugin's or an installed package's family)."""
    from architectures.registry import family

    chosen = family(config.encoder)
    builder = getattr(chosen.builder, "func", chosen.builder)  # a partial's function
    return chosen.user or not (getattr(builder, "__module__", None) or "").startswith("architectures.")
