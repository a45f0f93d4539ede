"""The folders benchmarks/harness.py prepares for two peer paths, with
stand-ins for the peer's own tools: infinity-emb's optimum engine (a folder whose only ONNX file is
the graph it is given) and sentence-transformers' OpenVINO static int8 export (its calibration set
from local sentences)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import harness  # noqa: E402


def _checkpoint(tmp_path: Path) -> SimpleNamespace:
    ck = tmp_path / "checkpoint"
    (ck / "onnx").mkdir(parents=True)
    (ck / "1_Pooling").mkdir()
    for name in ("config.json", "tokenizer.json", "modules.json", "1_Pooling/config.json"):
        (ck / name).write_text("{}")
    (ck / "model.safetensors").write_bytes(b"weights")
    (ck / "onnx" / "model_O3.onnx").write_bytes(b"other graph")
    return SimpleNamespace(folder=ck)


def test_infinitys_onnx_folder_holds_the_given_graph_as_its_only_onnx_file(tmp_path):
    resolved = _checkpoint(tmp_path)
    fp32 = tmp_path / "export" / "model.onnx"
    fp32.parent.mkdir()
    fp32.write_bytes(b"our fp32 graph")
    root = tmp_path / "peers"
    root.mkdir()
    stale_hub = root / "infinity-onnx.hub"
    stale_hub.mkdir()
    (stale_hub / "model_optimized.onnx").write_bytes(b"an older folder's graph")

    folder = harness.infinity_onnx_folder(resolved, fp32, root)

    # the engine globs the folder for *.onnx from inside it ("."): it can only find this one, relative
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*.onnx")) == ["model.onnx"]  # a bare name, as Optimum 2 wants
    assert (folder / "model.onnx").read_bytes() == b"our fp32 graph"
    assert (folder / "1_Pooling" / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    assert not (folder / "model.safetensors").exists()
    assert not stale_hub.exists()  # its optimized graph of another folder is never reused
    assert not list(root.glob(".infinity-onnx.*"))
    # another graph given: the folder is made again around it
    other = tmp_path / "export" / "model_O2.onnx"
    other.write_bytes(b"the O2 graph, longer")
    assert (harness.infinity_onnx_folder(resolved, other, root) / "model.onnx").read_bytes() == b"the O2 graph, longer"


def _fake_python(tmp_path: Path, body: str) -> Path:
    """A stand-in for the peer environment's python: called as `python -c CODE FOLDER CALIBRATION N`."""
    script = tmp_path / "python"
    script.write_text('#!/bin/sh\nfolder="$3"; cal="$4"; n="$5"\n' + body)
    script.chmod(0o755)
    return script


def test_the_openvino_static_export_is_calibrated_on_the_given_sentences_as_one_csv_column(tmp_path):
    resolved = _checkpoint(tmp_path)
    root = tmp_path / "peers"
    root.mkdir()
    seen = tmp_path / "seen.csv"
    python = _fake_python(
        tmp_path,
        f'cp "$cal/train.csv" {seen}\n[ "$n" = 3 ] || exit 9\n'
        'mkdir -p "$folder/openvino" && touch "$folder/openvino/openvino_model_qint8_quantized.xml"\n',
    )
    sentences = ["A man plays a guitar.", 'She said "yes, later".', "Two, three"]

    folder = harness.ov_static_folder(python, resolved, sentences, root)

    assert (folder / harness.OV_STATIC_FILE).is_file()
    assert (folder / "model.safetensors").is_file()  # the OpenVINO export needs the checkpoint's weights
    with open(seen, newline="") as f:
        assert list(csv.reader(f)) == [["sentence"]] + [[s] for s in sentences]  # commas and quotes survive
    assert not [p.name for p in root.iterdir() if p.name.startswith(".")]  # no temporary folder left behind
    # made once: a second call does not run the export again
    assert harness.ov_static_folder(tmp_path / "no-such-python", resolved, sentences, root) == folder


def test_a_failed_openvino_static_export_says_why_and_leaves_nothing_half_made(tmp_path):
    resolved = _checkpoint(tmp_path)
    root = tmp_path / "peers"
    root.mkdir()
    python = _fake_python(tmp_path, 'echo "ValueError: BuilderConfig default not found" >&2\nexit 1\n')
    with pytest.raises(RuntimeError, match="exit 1.*BuilderConfig default not found"):
        harness.ov_static_folder(python, resolved, ["one sentence"], root)
    assert list(root.iterdir()) == []
    silent = _fake_python(tmp_path, "exit 0\n")  # ran, but wrote no quantized model
    with pytest.raises(RuntimeError, match="not openvino/openvino_model_qint8_quantized.xml"):
        harness.ov_static_folder(silent, resolved, ["one sentence"], root)
    with pytest.raises(ValueError, match="no calibration sentences"):
        harness.ov_static_folder(silent, resolved, [], root)
    assert not (root / "st-openvino-static").exists()
