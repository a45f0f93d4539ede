"""The decision: rank every configuration of a sweep, apply the gates, name the one to ship.

    from pipeline.decision import decide_sweep
    decision = decide_sweep(parent_run_id, cfg.decision, cfg.tracking.resolved_uri(), out_dir="reports")
    print(decision.recommendation)

The modules, each small and usable on its own:

- :mod:`.types`: the results (:class:`Decision`, :class:`Winner`, :class:`Robustness`) and the
  one input type, :class:`Inputs`;
- :mod:`.inputs`: the runs frame, built the same way from MLflow runs or from local records;
- :mod:`.gates`, :mod:`.scores`, :mod:`.matrix`: pure functions over a DataFrame (no MLflow,
  no files): hard and graded gates, fixed-scale scores with ties inside the noise, the order;
- :mod:`.noise`: between-run noise (the leaders re-timed in alternation at the sweep's end),
  within-run bootstrap, moved weights;
- :mod:`.core`: :func:`decide`, the winner and the recommendation in words;
- :mod:`.mlflow_io`: reading a sweep from MLflow and logging the decision on its parent;
- :mod:`.report`: the files (tables, figures, markdown), from the result types alone;
- :mod:`.api`: :func:`decide_sweep`; :mod:`.cli`: ``python -m pipeline.decide``.

The profile is the Hydra config group ``decision`` (``conf/decision/*.yaml``, schema
:class:`pipeline.config.DecisionConfig`).  Runs not tagged ``status=ok`` (skipped, failed,
unfinished) are listed with their reason, never ranked; a run whose benchmark was contended
(tag ``bench.contended``) is ranked after every quiet one and can never be a go.
"""

from pipeline.decision.api import decide_sweep, load_sweep, write_outputs
from pipeline.decision.core import decide, recommendation, reproduce_command
from pipeline.decision.inputs import PARAMS, from_records, from_search_runs, labels, run_row, runs_frame
from pipeline.decision.matrix import evaluate, pareto_front, winner_of
from pipeline.decision.mlflow_io import latest_parent, load_children, load_inputs, load_samples_ms
from pipeline.decision.profile import as_decision_config, compose_decision
from pipeline.decision.types import VERDICTS, DecideError, Decision, Inputs, Robustness, Winner

__all__ = [
    "PARAMS",
    "VERDICTS",
    "DecideError",
    "Decision",
    "Inputs",
    "Robustness",
    "Winner",
    "as_decision_config",
    "compose_decision",
    "decide",
    "decide_sweep",
    "evaluate",
    "from_records",
    "load_sweep",
    "from_search_runs",
    "labels",
    "latest_parent",
    "load_children",
    "load_inputs",
    "load_samples_ms",
    "pareto_front",
    "recommendation",
    "reproduce_command",
    "run_row",
    "runs_frame",
    "winner_of",
    "write_outputs",
]
