"""Model sources and conventions: split-zip packages, imported ONNX files, hub-only models
offline, and the decoder path (tiny Qwen3: left padding, last-token pooling, a prefix)."""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import onnx
import pytest
from conftest import WORDS, _sentence_transformers_files, tiny_overrides
from mlflow.tracking import MlflowClient
from onnx import helper

from pipeline.config import ModelConfig, to_config
from pipeline.core.cache import sha256_file
from pipeline.job.run import execute
from pipeline.model import export, sources
from pipeline.model.sources import ChecksumMismatch, ModelUnavailable, resolve


def _run(compose, model_dir, data_dir, tmp_path, *extra):
    dcfg = compose(tiny_overrides(model_dir, data_dir, tmp_path) + list(extra))
    cfg = to_config(dcfg)
    return execute(cfg, dcfg, tmp_path / "out"), cfg


# -- split zip over several installed packages ------------------------------------------
def _fake_split_packages(site: Path, model_dir: Path, n: int = 3) -> list[str]:
    """Zip ``model_dir`` under one top folder, split it in n parts, each in a fake installed distribution."""
    blob = site / "whole.zip"
    with zipfile.ZipFile(blob, "w") as z:
        for p in sorted(model_dir.rglob("*")):
            z.write(p, f"tiny/{p.relative_to(model_dir)}")
        z.writestr("tiny/desktop.ini", "junk")
    data = blob.read_bytes()
    blob.unlink()
    size = -(-len(data) // n)
    names = []
    for i in range(n):
        dist, pkg = f"tiny-part-{i + 1:03d}", f"tiny_part_{i + 1:03d}"
        rel = f"{pkg}/input/tiny.zip.{i + 1:03d}"
        (site / rel).parent.mkdir(parents=True)
        (site / rel).write_bytes(data[i * size : (i + 1) * size])
        info = site / f"{pkg}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n")
        (info / "RECORD").write_text(f"{rel},,\n{pkg}-0.0.1.dist-info/METADATA,,\n")
        names.append(dist)
    return names


def test_split_zip_packages_assemble_once_and_verify(tiny_bert, tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    dists = _fake_split_packages(site, tiny_bert)
    monkeypatch.syspath_prepend(str(site))
    digest = sha256_file(tiny_bert / "model.safetensors")
    cfg = ModelConfig(name="tiny-split", source="split_zip_packages", package=None, packages=dists, subdir="", sha256=digest)
    first = resolve(cfg, tmp_path / "cache")
    assert first.verified and first.weights_sha256 == digest
    assert (first.folder / "tokenizer.json").is_file() and (first.folder / "1_Pooling" / "config.json").is_file()
    assert not list(first.folder.rglob("desktop.ini"))
    mtime = first.weights.stat().st_mtime_ns
    assert resolve(cfg, tmp_path / "cache").weights.stat().st_mtime_ns == mtime  # reused, not unzipped again
    with pytest.raises(ChecksumMismatch):
        resolve(ModelConfig(**{**cfg.__dict__, "sha256": "0" * 64}), tmp_path / "cache")
    with pytest.raises(ModelUnavailable, match="not installed"):
        resolve(ModelConfig(**{**cfg.__dict__, "packages": [*dists, "tiny-part-missing"]}), tmp_path / "cache")
    # out of order, the parts are not a zip
    with pytest.raises(ModelUnavailable, match="not a zip"):
        resolve(ModelConfig(**{**cfg.__dict__, "packages": dists[::-1]}), tmp_path / "cache2")


# -- an existing ONNX file imported as it is ----------------------------------------------
def _obscure_outputs(src: Path, dst: Path) -> None:
    """The fp32 export with unhelpful output names and distractor outputs (like the vital file)."""
    m = onnx.load(str(src))
    g = m.graph
    hidden = g.output[0].name
    g.node.extend(
        [
            helper.make_node("Identity", [hidden], ["onnx::Shape_7"]),
            helper.make_node("Identity", ["input_ids"], ["output"]),
            helper.make_node("Unsqueeze", ["attention_mask", "ax"], ["mask3"]),
            helper.make_node("Cast", ["mask3"], ["463"], to=onnx.TensorProto.FLOAT),
        ]
    )
    g.initializer.append(helper.make_tensor("ax", onnx.TensorProto.INT64, [1], [2]))
    del g.output[:]
    g.output.extend(
        [
            helper.make_tensor_value_info("output", onnx.TensorProto.INT64, ["b", "s"]),
            helper.make_tensor_value_info("463", onnx.TensorProto.FLOAT, ["b", "s", 1]),
            helper.make_tensor_value_info("onnx::Shape_7", onnx.TensorProto.FLOAT, ["b", "s", 32]),
        ]
    )
    dst.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(dst / "obscure.onnx"))


@pytest.fixture
def imported_onnx(tiny_bert, tmp_path, monkeypatch):
    """An ONNX-only folder plus a conf dir naming the tiny BERT, for tokenizer_from / reference_from."""
    base = export.base_artifact(
        resolve(ModelConfig(name="tiny-bert", source="local", path=str(tiny_bert), package=None)),
        ModelConfig(name="tiny-bert", source="local", path=str(tiny_bert), package=None),
        tmp_path / "c0",
    )
    onnx_dir = tmp_path / "onnx-only"
    _obscure_outputs(base.onnx_path, onnx_dir)
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "tiny-bert.yaml").write_text(f"name: tiny-bert\nsource: local\npackage: null\npath: {tiny_bert}\n")
    monkeypatch.setattr(sources, "CONF_DIR", conf)
    return onnx_dir


def _onnx_overrides(onnx_dir: Path, reference: str | None) -> list[str]:
    return [
        "model.name=tiny-onnx",
        "model.source=onnx_local",
        f"model.path={onnx_dir}",
        "model.weights_file=obscure.onnx",
        f"model.sha256={sha256_file(onnx_dir / 'obscure.onnx')}",
        "model.tokenizer_from=tiny-bert",
        f"model.reference_from={reference or 'null'}",
    ]


def test_imported_onnx_infers_token_output_and_has_no_fake_parity(compose, tiny_bert, tiny_sts_dir, tmp_path, imported_onnx):
    result, cfg = _run(compose, tiny_bert, tiny_sts_dir, tmp_path, *_onnx_overrides(imported_onnx, None))
    assert result.status == "ok", result.reason
    client = MlflowClient(cfg.tracking.resolved_uri())
    run = client.get_run(result.run_id)
    assert "parity.min_cosine" not in run.data.metrics
    assert "no PyTorch checkpoint" in run.data.tags["parity.unavailable"]
    assert run.data.metrics["quality.stsb_spearman"] == pytest.approx(result.metrics["quality.stsb_spearman"])
    report = json.loads((tmp_path / "out" / "validation.json").read_text())
    assert "onnx::Shape_7" in " ".join(report["notes"]) and "tiny-bert" in " ".join(report["notes"])
    assert "unavailable" in report["parity"]


def test_imported_onnx_with_a_reference_checks_parity(compose, tiny_bert, tiny_sts_dir, tmp_path, imported_onnx):
    result, _ = _run(compose, tiny_bert, tiny_sts_dir, tmp_path, *_onnx_overrides(imported_onnx, "tiny-bert"))
    assert result.status == "ok", result.reason
    assert result.metrics["parity.min_cosine"] > 0.9999  # the same weights as the reference


def test_imported_onnx_refuses_derived_variants(compose, tiny_bert, tiny_sts_dir, tmp_path, imported_onnx):
    result, _ = _run(compose, tiny_bert, tiny_sts_dir, tmp_path, *_onnx_overrides(imported_onnx, None), "variant=int8_dynamic")
    assert result.status == "skipped" and "as it is" in result.reason


def test_token_output_inference_refuses_ambiguity(tmp_path):
    g = helper.make_graph(
        [helper.make_node("Gather", ["emb", "input_ids"], ["h"]), helper.make_node("Identity", ["h"], ["h2"])],
        "g",
        [helper.make_tensor_value_info("input_ids", onnx.TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, ["b", "s", 4]) for n in ("h", "h2")],
        [helper.make_tensor("emb", onnx.TensorProto.FLOAT, [10, 4], [0.0] * 40)],
    )
    onnx.save(helper.make_model(g), str(tmp_path / "m.onnx"))
    with pytest.raises(ValueError, match="expected one rank-3 output"):
        export.infer_token_output(tmp_path / "m.onnx")


# -- hub-only models offline ------------------------------------------------------------
@pytest.mark.parametrize("model", ["bge-small-en-v1.5", "e5-small-v2", "Qwen3-Embedding-0.6B"])
def test_hub_only_model_is_skipped_fast_offline(compose, tiny_bert, tiny_sts_dir, tmp_path, monkeypatch, model):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    dcfg = compose([f"model={model}", *tiny_overrides(tiny_bert, tiny_sts_dir, tmp_path)[5:]])
    cfg = to_config(dcfg)
    t0 = time.perf_counter()
    result = execute(cfg, dcfg, tmp_path / "out")
    assert time.perf_counter() - t0 < 20
    assert result.status == "skipped" and "unavailable" in result.reason and cfg.model.hub_id in result.reason


def test_model_conventions_in_configs(compose):
    bge = to_config(compose(["model=bge-small-en-v1.5"])).model
    e5 = to_config(compose(["model=e5-small-v2"])).model
    qwen = to_config(compose(["model=Qwen3-Embedding-0.6B"])).model
    assert bge.native_pooling == "cls"
    assert (e5.query_prefix, e5.document_prefix) == ("query: ", "passage: ")
    assert qwen.padding_side == "left" and qwen.native_pooling == "last_token" and qwen.query_prefix


# -- a tiny decoder: Qwen3 with left padding, last-token pooling and an instruction prefix -
def build_tiny_qwen3(folder: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3Model

    folder.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<unk>"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(specials + WORDS + ["instruct:", "query:"]))}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    eos = vocab["<|endoftext|>"]
    tok.post_processor = processors.TemplateProcessing(single="$A <|endoftext|>", special_tokens=[("<|endoftext|>", eos)])
    PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<unk>",
        padding_side="left",
        model_max_length=128,
    ).save_pretrained(folder)
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=128,
        pad_token_id=eos,
        eos_token_id=eos,
    )
    Qwen3Model(config).eval().save_pretrained(folder, safe_serialization=True)
    _sentence_transformers_files(folder, 32, pooling="last_token")
    return folder


@pytest.fixture(scope="module")
def tiny_qwen3(tmp_path_factory) -> Path:
    return build_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3") / "model")


def test_tiny_decoder_job_left_padding_last_token(compose, tiny_qwen3, tiny_sts_dir, tmp_path):
    result, cfg = _run(
        compose,
        tiny_qwen3,
        tiny_sts_dir,
        tmp_path,
        "model.name=tiny-qwen3",
        "pooling=last_token",
        "model.native_pooling=last_token",
        "model.padding_side=left",
        "model.query_prefix='Instruct: query: '",
        "bench.batch_size=4",
    )
    assert result.status == "ok", result.reason
    # left-padded batches, last-token pooled, the prefix on both sides: the same vectors as PyTorch
    assert result.metrics["parity.min_cosine"] > 0.999
    validation = json.loads((tmp_path / "out" / "validation.json").read_text())
    assert "position_ids" in validation["inputs"] or "attention_mask" in validation["inputs"]
    # right padding with last-token pooling on a decoder still pools the real last token
    right, _ = _run(
        compose,
        tiny_qwen3,
        tiny_sts_dir,
        tmp_path / "r",
        "model.name=tiny-qwen3",
        "pooling=last_token",
        "model.native_pooling=last_token",
        "model.padding_side=right",
        "model.query_prefix='Instruct: query: '",
    )
    assert right.metrics["parity.min_cosine"] > 0.999
