"""The disk task's rules on a configuration: what means nothing (dropped from the plan, with
the reason)."""

from __future__ import annotations


def listed_activations(config) -> list[str]:
    """The names the `activations` setting lists, as given (one, or one per linear layer)."""
    return [name.strip() for name in config.activations.split(",")]


def layer_activations(config) -> list[str]:
    """One activation name per linear layer (hidden layers, then the output)."""
    names = listed_activations(config)
    if len(names) == 1:
        return names * config.hidden_layers + ["none"]
    return names


def why_meaningless(config) -> str | None:
    """The disk task's check on a configuration (it is dropped from the plan when not None)."""
    layers = config.hidden_layers + 1
    names = listed_activations(config)
    if len(names) not in (1, layers):
        return (f"activations lists {len(names)} names: give one, or one per linear layer "
                f"({layers} with hidden_layers = {config.hidden_layers})")
    if config.framework == "minidl":
        if config.optimizer != "sgd":
            return "minidl implements SGD only: use optimizer = \"sgd\" or framework = \"torch\""
        if config.loss != "mse_linear":
            return "minidl implements the MSE criterion on the network's output only: use loss = \"mse_linear\""
        if config.momentum:
            return "minidl's SGD has no momentum"
    if config.loss != "mse_linear" and layer_activations(config)[-1] != "none":
        return f"loss {config.loss} takes a logit: the output layer's activation must be none"
    return None
