"""The names a run carries, as MLflow and Hydra users know them (design.md, "Names every run
logs"): params under their Hydra keys, the run's name, the order of its metrics, its data set.
Pure functions of a config or a record; :mod:`pipeline.tracking.track` logs what they name."""

from __future__ import annotations

from pathlib import Path

from pipeline.core.vocab import Status

# the keys of a config that do not change what a job measures: not logged as params, not in the config hash
# that resume matches on (pipeline.sweep.plan.config_hash; the list is pinned by tests/test_architecture.py)
NOT_JOB_SETTINGS = ("hydra", "tracking", "cache_dir", "rerun", "reports_dir", "records_dir", "decision")
# Hydra config groups whose choice is a param of its own (``provider=cuda``: param ``provider``)
GROUPS = ("model", "variant", "provider", "pooling")
MAX_PARAM_VALUE = 6000  # MLflow's limit on a param's value


def param_value(v) -> str:
    """A config value as a Hydra user writes it on the command line: null, true/false, [a,b]."""
    import json

    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, default=str)
    return str(v)


def flatten(node, prefix: str = "") -> dict[str, str]:
    """``{"bench": {"batch_size": 1}}`` -> ``{"bench.batch_size": "1"}`` (an empty mapping stays ``{}``)."""
    out: dict[str, str] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = param_value(value)
    return out


def hydra_choices() -> dict[str, str]:
    """The config-group choices of the running Hydra job (``+candidate=minilm-int8``,
    ``+serve=mb16_w0``), without Hydra's own groups; empty outside a Hydra app."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return {}
        choices = HydraConfig.get().runtime.choices
    except Exception:
        return {}
    return {k: str(v) for k, v in choices.items() if v is not None and not k.startswith("hydra/") and k not in ("sweep", "base_config")}


# a param's Hydra key -> the short name runs were logged with before the Hydra keys; the decision's
# frame still uses the short names as its columns (pipeline.decision.inputs.PARAM_KEYS inverts this)
OLD_PARAM_NAMES = {
    "bench.batch_size": "batch_size",
    "provider.threads": "threads",
    "model.max_length": "max_length",
    "bench.scenario": "scenario",
    "bench.load.max_batch": "serve.max_batch",
    "bench.load.max_wait_ms": "serve.max_wait_ms",
    "bench.load.workers": "serve.workers",
}


def param(params: dict, key: str, default=None):
    """The param ``key`` (a Hydra key) of a run, also from a run logged with the old short names."""
    if key in params:
        return params[key]
    old = OLD_PARAM_NAMES.get(key)
    return params.get(old, default) if old else default


# -- run names ----------------------------------------------------------------------------------------
_SHORT = {"bench.batch_size": "b", "provider.threads": "t", "model.max_length": "L"}


def _short(key: str, value: str) -> str:
    key = key.lstrip("+~")
    if key in _SHORT:
        return f"{_SHORT[key]}{value}"
    if "." not in key:  # a config group: its choice says it (cuda, int8_dynamic, minilm-o2)
        return value
    return f"{key.rsplit('.', 1)[-1]}={value}"


def label(model, variant, provider, pooling, batch_size, load_front: tuple | None = None) -> str:
    """A configuration's one label, the run's name (after what its sweep varies), the decision's
    label and the report's rows: ``model/variant/provider/pooling/b<batch>`` (+
    ``/load-mb<max_batch>-w<max_wait_ms>`` under load, ``load_front=(max_batch, max_wait_ms)``)."""
    return f"{model}/{variant}/{provider}/{pooling}/b{batch_size}" + (load_suffix(*load_front) if load_front else "")


def load_suffix(max_batch, max_wait_ms) -> str:
    """The serving front of a load run, as its label ends."""
    return f"/load-mb{max_batch}-w{max_wait_ms}"


def config_label(cfg) -> str:
    """:func:`label` of a job's config."""
    front = (cfg.bench.load.max_batch, param_value(cfg.bench.load.max_wait_ms)) if cfg.bench.scenario == "load" else None
    return label(cfg.model.name, cfg.variant.name, cfg.provider.name, cfg.pooling.mode, cfg.bench.batch_size, front)


def display_name(base: str, params: dict[str, str], tags: dict[str, str], status: str | None = None) -> str:
    """A run's name in the MLflow UI: what its sweep varies first (``cuda b8 · all-MiniLM-...``),
    since the run list cuts long names; a skipped or failed job says so first
    (``[skipped] cuda b8 · ...``) so that it does not read as a result."""
    varies = [k for k in (tags.get("sweep.varies") or "").split(",") if k]
    given = {}
    for o in (tags.get("hydra.overrides") or "").split():
        k, sep, v = o.partition("=")
        if sep:
            given[k.lstrip("+~")] = v
    lead = []
    for key in varies:
        key = key.lstrip("+~")
        value = given.get(key, param(params, key))
        if value is not None:
            lead.append(_short(key, str(value)))
    name = " ".join(lead) + " · " + base if lead else base
    if status in (Status.SKIPPED, Status.FAILED):
        name = f"[{status}] {name}"
    return name[:250]


HEADLINE_METRICS = (
    "latency.p95_ms",
    "quality.stsb_spearman",
    "throughput.sentences_per_s",
    "latency.p50_ms",
    "latency.p99_ms",
    "load.max_qps_at_p95_target",
    "load.p95_ms_at_100qps",
    "parity.min_cosine",
    "quality.stsb_delta_vs_fp32",
    "memory.peak_rss_mb",
    "model.size_mb",
    "load.session_s",
    "load.first_call_ms",
    "roofline_fraction",
)
BOOKKEEPING = ("bench.", "conditions.", "export.", "usability.", "provider.nodes")


def metric_rank(name: str) -> tuple[int, int]:
    if name in HEADLINE_METRICS:
        return (0, HEADLINE_METRICS.index(name))
    if name.startswith(BOOKKEEPING):
        return (2, 0)
    return (1, 0)


def dataset_input(rec):
    """The evaluation data set of a job that scored quality, as an MLflow dataset input
    (``mlflow.log_input``: name, digest, source; context ``evaluation``), or None."""
    import json

    from mlflow.entities import Dataset, DatasetInput, InputTag

    name, sha = rec.tags.get("quality.dataset"), rec.tags.get("quality.data_sha256")
    if not name or not sha:
        return None
    split = param(rec.params, "quality.split") or "test"
    data_dir = param(rec.params, "quality.data_dir")
    if not name or not sha or not data_dir:  # a record from before the params had the config's keys
        return None
    source = param(rec.params, "quality.source") or "auto"
    path = Path(data_dir) / "stsb" / f"stsb-en-{split}.csv"
    if source == "local" or (source == "auto" and path.is_file()):
        source_type, where = "local", {"uri": str(path.resolve())}
    else:
        source_type, where = "hugging_face", {"path": param(rec.params, "quality.hub_dataset") or "", "split": split}
    schema = {
        "mlflow_colspec": [
            {"type": "string", "name": "sentence1"},
            {"type": "string", "name": "sentence2"},
            {"type": "double", "name": "score"},
        ]
    }
    profile = {"num_rows": int(rec.metrics.get("quality.pairs", 0)), "sha256": sha}
    dataset = Dataset(
        name=name,
        digest=sha[:16],
        source_type=source_type,
        source=json.dumps(where),
        schema=json.dumps(schema),
        profile=json.dumps(profile),
    )
    return DatasetInput(dataset=dataset, tags=[InputTag("mlflow.data.context", "evaluation")])
