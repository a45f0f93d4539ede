"""Where the nodes go (onnxruntime's recorded assignment), the CoreML/NNAPI check, IO binding."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import tiny_overrides
from onnx import TensorProto, helper

from pipeline.config import to_config
from pipeline.embedder.embed import Embedder
from pipeline.job.run import prepare
from pipeline.model import export
from pipeline.runtime import placement

SENTENCES = ["a man is playing the guitar", "two dogs run in a green field", "the sky", "red car on the old road"]


@pytest.fixture(scope="module")
def tiny_export(tiny_bert, tiny_sts_dir, tmp_path_factory):
    from conftest import CONF_DIR
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from pipeline.config import register_configs

    tmp = tmp_path_factory.mktemp("placement")
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = to_config(compose(config_name="config", overrides=tiny_overrides(tiny_bert, tiny_sts_dir, tmp)))
    GlobalHydra.instance().clear()
    return export.export(prepare(cfg), cfg.model, cfg.variant, cfg.cache_dir)


def test_cpu_session_puts_every_node_on_the_cpu(tiny_export):
    a = placement.node_assignment(tiny_export.onnx_path, "CPUExecutionProvider")
    assert a.total > 10
    assert a.nodes_by_provider == {"CPUExecutionProvider": a.total}
    assert a.share == 1.0 and not a.fallback


def test_a_partial_assignment_is_a_fallback():
    a = placement.NodeAssignment("CoreMLExecutionProvider", {"CoreMLExecutionProvider": 30, "CPUExecutionProvider": 10})
    assert a.share == 0.75 and a.fallback


def test_mobile_usability_reports_per_ep_partitions(tiny_export):
    u = placement.mobile_usability(tiny_export.onnx_path)
    assert set(u.eps) == {"NNAPI", "CoreML NeuralNetwork", "CoreML MLProgram"}
    for info in u.eps.values():
        assert 0 <= info["supported_nodes"] <= info["nodes"] and info["nodes"] > 0
        assert info["suitability"] in ("NO", "MAYBE", "YES")
    assert "Checking NNAPI" in u.log and "CoreML MLProgram" in u.log
    assert u.coreml_oversize_dims == []  # the tiny vocabulary fits


def test_an_embedding_table_over_16384_rows_is_flagged_for_coreml(tmp_path):
    vocab = placement.COREML_MAX_DIM + 1
    table = helper.make_tensor("table", TensorProto.FLOAT, [vocab, 4], np.zeros(vocab * 4, dtype=np.float32))
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["out"])],
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 4])],
        [table],
    )
    path = tmp_path / "big.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    u = placement.mobile_usability(path)
    assert [d["shape"] for d in u.coreml_oversize_dims] == [[vocab, 4]]
    assert "16384" in u.log


def test_io_binding_gives_the_same_vectors(tiny_export):
    plain = Embedder(tiny_export.folder, onnx_file=tiny_export.onnx_path.name)
    bound = Embedder(tiny_export.folder, onnx_file=tiny_export.onnx_path.name, io_binding=True)
    np.testing.assert_array_equal(plain.embed(SENTENCES, batch_size=2), bound.embed(SENTENCES, batch_size=2))
