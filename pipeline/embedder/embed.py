"""The embedding path: tokenize -> ONNX Runtime -> pool -> L2-normalize.

This is the product the pipeline measures and recommends.  It needs only numpy,
``tokenizers`` and ``onnxruntime``: no torch, no transformers.

    from pipeline.embedder.embed import Embedder
    emb = Embedder("path/to/onnx-folder", pooling="mean", threads=2)
    vectors = emb.embed(["a sentence", "another one"])   # (2, dim) float32, unit norm
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

_GRAPH_OPT = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


# ONNX Runtime graph fusions left off by default, per provider, because they were measured to
# make that provider slower.  On the CPU provider of onnxruntime 1.32 a SkipLayerNormalization
# node takes 7x the time of the Add + LayerNormalization it replaces for 32 sentences and 2.5x
# for one (python benchmarks/fusions.py), which costs an int8 MiniLM about 12% of its throughput.
SLOW_FUSIONS: dict[str, tuple[str, ...]] = {"CPUExecutionProvider": ("SkipLayerNormFusion",)}


DEFAULT_MAX_LENGTH = 256

from pipeline.core.vocab import POOLING_MODES  # noqa: E402
from pipeline.embedder.grouping import length_groups  # noqa: E402,F401  (the batch split, re-exported)
from pipeline.embedder.plugin_eps import ProviderFallback, ProviderUnavailable  # noqa: E402,F401  (part of the embedder's contract)


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """Pool token states (batch, seq, dim) into (batch, dim), honouring the attention mask.

    ``last_token`` takes the last position whose mask is 1, so it works with left or
    right padding.
    """
    if mode == "mean":
        m = mask.astype(hidden.dtype)
        summed = np.einsum("bsd,bs->bd", hidden, m)
        counts = np.maximum(m.sum(axis=1, keepdims=True), 1e-9)
        return summed / counts
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        masked = np.where(mask[:, :, None].astype(bool), hidden, np.finfo(hidden.dtype).min)
        return masked.max(axis=1)
    if mode == "last_token":
        seq = mask.shape[1]
        last = seq - 1 - np.argmax(mask[:, ::-1] > 0, axis=1)
        return hidden[np.arange(hidden.shape[0]), last]
    raise ValueError(f"unknown pooling {mode!r}; allowed: {', '.join(POOLING_MODES)}")


def position_limit(folder: Path) -> int | None:
    """The most tokens the model in ``folder`` can take, from its ``config.json``
    (``max_position_embeddings``, less the padding offset of RoBERTa-style position ids), or
    None when it does not say."""
    cfg = Path(folder) / "config.json"
    if not cfg.is_file():
        return None
    try:
        c = json.loads(cfg.read_text())
    except (OSError, ValueError):
        return None
    n = c.get("max_position_embeddings") if isinstance(c, dict) else None
    if not isinstance(n, int) or n <= 0:
        return None
    if c.get("model_type") in ("roberta", "xlm-roberta", "camembert", "mpnet", "longformer", "bart"):
        n -= int(c.get("pad_token_id") or 0) + 1  # positions start after the padding index
    return n


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _texts(texts: Any) -> list[str]:
    """``texts`` as a list of str; a clear error names the first bad item and its index."""
    from collections.abc import Iterable, Mapping

    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (Mapping, bytes, bytearray)) or not isinstance(texts, Iterable):
        raise TypeError(f"texts must be a str or a sequence of str, got {type(texts).__name__}")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(t).__name__} {repr(t)[:60]}")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"texts[{i}] is not valid Unicode text: {exc.reason} {t[exc.start]!r} at position {exc.start}") from None
    return out


def l2_normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def session_options(
    threads: int = 0, graph_optimization_level: str = "all", mem_arena: bool = True, session_config: dict[str, str] | None = None
):
    """ONNX Runtime session options; ``session_config``: session config entries, for example
    ``{"session.intra_op.allow_spinning": "0"}``."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _GRAPH_OPT[graph_optimization_level])
    so.enable_cpu_mem_arena = mem_arena
    so.log_severity_level = 3
    for key, value in (session_config or {}).items():
        so.add_session_config_entry(str(key), str(value))
    return so


def _check_args(pooling: str, batch_size, max_length, threads, call_cost, padding_side: str) -> None:
    if pooling not in POOLING_MODES:
        raise ValueError(f"unknown pooling {pooling!r}; allowed: {', '.join(POOLING_MODES)}")
    _check_int("batch_size", batch_size, 1)
    if max_length is not None:
        _check_int("max_length", max_length, 1)
    _check_int("threads", threads, 0)
    _check_int("call_cost", call_cost, 0)
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")


def _session(path: Path, so, provider: str, provider_options, devices, disabled_optimizers):
    """The inference session: a plugin EP appended for its ``devices``, any other by name."""
    import onnxruntime as ort

    from pipeline.embedder.plugin_eps import option_strings

    options = option_strings(provider_options)
    providers = [(provider, options)]
    if devices is not None:
        so.add_provider_for_devices(devices, options)
        providers = None
    return ort.InferenceSession(str(path), sess_options=so, providers=providers, disabled_optimizers=list(disabled_optimizers) or None)


class Embedder:
    """Embed texts with an ONNX model folder (``model.onnx`` + ``tokenizer.json``).

    Parameters
    ----------
    model_dir: folder holding the ONNX graph and a fast-tokenizer ``tokenizer.json``.
    pooling: ``mean``, ``cls``, ``max`` or ``last_token`` (attention-mask aware).
    provider: an ONNX Runtime execution provider name; never silently replaced.
    threads: intra-op threads (0: ONNX Runtime's default).
    max_length: tokens kept per text (longer texts are truncated); at most the model's positions
        (``max_position_embeddings`` in its config.json); None: 256, or fewer if the model has fewer.
    batch_size: at most this many texts per inference call.  Texts are sorted by length and
        cut into the groups that compute the least padding (a few short texts are not padded to
        the length of one long one; see ``call_cost``); results come back in input order.
    call_cost: the cost of one more inference call, in padded tokens, that the grouping weighs
        against padding (0: split wherever lengths differ; a huge value: plain batches).
    padding_side: ``right`` (encoders) or ``left`` (decoders).
    prefix: text put before every input (for example ``"query: "``).
    io_binding: run through an ``IOBinding`` (inputs bound from numpy, the output bound to
        CPU memory and copied out) instead of ``session.run``.  On the CPU provider this is
        the same work by another API; on a GPU provider it keeps ORT's own output allocation.
    disabled_optimizers: ONNX Runtime graph optimizers to leave off; None: the ones measured
        to slow this provider down (``SLOW_FUSIONS``).
    """

    def __init__(
        self,
        model_dir: str | os.PathLike,
        *,
        pooling: str = "mean",
        provider: str = "CPUExecutionProvider",
        provider_options: dict[str, Any] | None = None,
        threads: int = 0,
        max_length: int | None = None,
        batch_size: int = 32,
        padding_side: str = "right",
        prefix: str = "",
        onnx_file: str = "model.onnx",
        output_name: str | None = None,
        tokenizer_dir: str | os.PathLike | None = None,
        graph_optimization_level: str = "all",
        mem_arena: bool = True,
        normalize: bool = True,
        io_binding: bool = False,
        call_cost: int = 32,
        disabled_optimizers: Sequence[str] | None = None,
        session_config: dict[str, str] | None = None,
        plugin: str | None = None,
    ):
        from pipeline.embedder.plugin_eps import load_plugin

        _check_args(pooling, batch_size, max_length, threads, call_cost, padding_side)
        devices = load_plugin(plugin, provider) if plugin else None
        if devices is None and provider not in available_providers():
            raise ProviderUnavailable(
                f"execution provider {provider} is not in this onnxruntime build (available: {', '.join(available_providers())})"
            )
        self.model_dir = Path(model_dir)
        self.pooling = pooling
        self.provider = provider
        self.batch_size = batch_size
        self.padding_side = padding_side
        self.prefix = prefix
        self.normalize = normalize
        self.io_binding = io_binding
        self.call_cost = call_cost
        if disabled_optimizers is None:
            disabled_optimizers = SLOW_FUSIONS.get(provider, ())
        self.disabled_optimizers = tuple(disabled_optimizers)

        self._setup_tokenizer(onnx_file, tokenizer_dir, max_length)

        so = session_options(threads, graph_optimization_level, mem_arena, session_config)
        self.session = _session(self.model_dir / onnx_file, so, provider, provider_options, devices, self.disabled_optimizers)
        got = self.session.get_providers()[0]
        if got != provider:  # onnxruntime fell back: refuse rather than measure the wrong thing
            raise ProviderFallback(f"asked for {provider}, onnxruntime gave {got} (it fell back)")
        self.input_names = [i.name for i in self.session.get_inputs()]
        self._check_padding(onnx_file)
        self.output_name = output_name or self._token_output()
        out = next(o for o in self.session.get_outputs() if o.name == self.output_name)
        self.dim = out.shape[-1] if isinstance(out.shape[-1], int) else self._config_dim()

    # -- setup helpers -------------------------------------------------------------
    def _check_padding(self, onnx_file: str) -> None:
        if self.padding_side == "left" and "position_ids" not in self.input_names:
            # the graph numbers positions from the first slot, pads included: a text's vector would
            # then depend on how long its batch-mates are
            raise ValueError(
                f"padding_side='left' needs a graph that takes position_ids; {onnx_file} takes only "
                f"{', '.join(self.input_names)}: use padding_side='right' for this model"
            )

    def _setup_tokenizer(self, onnx_file: str, tokenizer_dir, max_length: int | None) -> None:
        from tokenizers import Tokenizer

        tok_dir = Path(tokenizer_dir) if tokenizer_dir else self.model_dir
        for need in (self.model_dir / onnx_file, tok_dir / "tokenizer.json"):
            if not need.is_file():
                what = "folder" if not need.parent.is_dir() else "file"
                raise FileNotFoundError(f"{need.parent if what == 'folder' else need}: no such {what} (model_dir {self.model_dir})")
        limit = position_limit(self.model_dir) or (position_limit(tok_dir) if tokenizer_dir else None)
        if max_length is None:  # the default: 256 tokens, or fewer if the model has fewer positions
            max_length = min(DEFAULT_MAX_LENGTH, limit or DEFAULT_MAX_LENGTH)
        elif limit is not None and max_length > limit:
            raise ValueError(f"max_length must be <= {limit}, the model's positions (config.json), got {max_length}")
        self.max_length = max_length
        self.tokenizer = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.pad_id = self._pad_id(tok_dir)
        # truncation keeps the special tokens: the tokenizer does it in Rust
        self.tokenizer.enable_truncation(max_length=max_length)

    def _pad_id(self, tok_dir: Path) -> int:
        cfg = tok_dir / "tokenizer_config.json"
        pad_token = None
        if cfg.is_file():
            pad_token = json.loads(cfg.read_text()).get("pad_token")
            if isinstance(pad_token, dict):
                pad_token = pad_token.get("content")
        for candidate in (pad_token, "[PAD]", "<pad>", "<|endoftext|>"):
            if candidate is not None and self.tokenizer.token_to_id(candidate) is not None:
                return int(self.tokenizer.token_to_id(candidate))
        return 0

    def _token_output(self) -> str:
        outs = self.session.get_outputs()
        for name in ("last_hidden_state", "token_embeddings"):
            if any(o.name == name for o in outs):
                return name
        rank3 = [o.name for o in outs if len(o.shape) == 3]
        if not rank3:
            raise ValueError(f"no (batch, seq, hidden) output in {[o.name for o in outs]}")
        return rank3[0]

    def _config_dim(self) -> int:
        cfg = self.model_dir / "config.json"
        if cfg.is_file():
            c = json.loads(cfg.read_text())
            for k in ("hidden_size", "d_model", "n_embd"):
                if k in c:
                    return int(c[k])
        return int(self._infer_batch([[self.pad_id]])[0].shape[-1])

    def token_counts(self, texts: Sequence[str] | str) -> list[int]:
        """Tokens per text after the prefix and truncation, as the embedder feeds them."""
        return [len(ids) for ids in self._encode(_texts(texts))]

    # -- the hot path ----------------------------------------------------------------
    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        if self.prefix:
            texts = [self.prefix + t for t in texts]
        if len(texts) == 1:  # no thread pool for one text: it would compete with ONNX Runtime's
            encs = [self.tokenizer.encode(texts[0])]
        else:
            encs = self.tokenizer.encode_batch(list(texts))
        return [e.ids or [self.pad_id] for e in encs]  # never an empty row

    def _arrays(self, ids: list[list[int]]) -> dict[str, np.ndarray]:
        n = len(ids)
        width = max(len(r) for r in ids)
        input_ids = np.full((n, width), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        left = self.padding_side == "left"
        for i, row in enumerate(ids):
            k = len(row)
            if left:
                input_ids[i, width - k :] = row
                mask[i, width - k :] = 1
            else:
                input_ids[i, :k] = row
                mask[i, :k] = 1
        feeds = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        if "position_ids" in self.input_names:
            feeds["position_ids"] = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
        return {k: v for k, v in feeds.items() if k in self.input_names}

    def _infer_batch(self, ids: list[list[int]]) -> np.ndarray:
        feeds = self._arrays(ids)
        if self.io_binding:
            binding = self.session.io_binding()
            for name, value in feeds.items():
                binding.bind_cpu_input(name, value)
            binding.bind_output(self.output_name, "cpu")
            self.session.run_with_iobinding(binding)
            hidden = binding.copy_outputs_to_cpu()[0]
        else:
            hidden = self.session.run([self.output_name], feeds)[0]
        if hidden.dtype != np.float32:  # fp16 graphs: pool and normalize in float32
            hidden = hidden.astype(np.float32)
        pooled = pool(hidden, feeds["attention_mask"], self.pooling)
        pooled = pooled.astype(np.float32, copy=False)
        return l2_normalize(pooled) if self.normalize else pooled

    def embed(self, texts: Sequence[str] | str, *, batch_size: int | None = None) -> np.ndarray:
        """Embed texts into an (n, dim) float32 array; rows are unit-norm when normalize."""
        texts = _texts(texts)
        if batch_size is not None:
            _check_int("batch_size", batch_size, 1)
        n = len(texts)
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        bs = batch_size if batch_size is not None else self.batch_size
        ids = self._encode(texts)
        if n == 1:
            return self._infer_batch(ids)
        lengths = [len(r) for r in ids]
        order = np.argsort(lengths, kind="stable")
        groups = length_groups([lengths[i] for i in order], bs, self.call_cost)
        if len(groups) == 1:  # one call: no reordering needed
            return self._infer_batch(ids)
        out = np.empty((n, self.dim), dtype=np.float32)
        for start, stop in groups:
            idx = order[start:stop]
            out[idx] = self._infer_batch([ids[i] for i in idx])
        return out

    __call__ = embed
