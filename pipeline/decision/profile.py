"""Decision profiles: the Hydra config group ``decision`` (``conf/decision/*.yaml``) as a typed
:class:`pipeline.config.DecisionConfig`."""

from __future__ import annotations

from pipeline.config import DecisionConfig, typed


def as_decision_config(node) -> DecisionConfig:
    """A DecisionConfig from a DictConfig / dict (the `decision` group) or a DecisionConfig."""
    if isinstance(node, DecisionConfig):
        return node
    obj = typed(DecisionConfig, node, "decision.")
    assert isinstance(obj, DecisionConfig)
    return obj


def compose_decision(profile: str = "default", overrides: list[str] | None = None):
    """Compose the project's Hydra config with ``decision=<profile>``; returns the typed Config.

    For the command line and tests. Inside a running Hydra app (the sweep end) pass the app's
    ``cfg.decision`` to :func:`pipeline.decision.decide_sweep` instead.
    """
    from hydra.core.global_hydra import GlobalHydra

    from pipeline.config import compose_config, to_config

    if GlobalHydra.instance().is_initialized():
        raise RuntimeError("compose_decision() inside a running Hydra app: pass cfg.decision to decide_sweep()")
    return to_config(compose_config([f"decision={profile}", *(overrides or [])]))
