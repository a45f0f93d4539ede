"""Third-party warnings go to the job's log file, not to the terminal."""

from __future__ import annotations

import logging
import os
import warnings

from pipeline.core import logs


def test_a_warning_inside_the_block_reaches_the_log_file_not_the_terminal(tmp_path, capsys):
    log_file = tmp_path / "job.log"
    handler = logging.FileHandler(log_file)
    root = logging.getLogger()
    root.addHandler(handler)
    before = os.environ.get("TQDM_DISABLE")
    pylog = logging.getLogger("py.warnings")
    state = (pylog.propagate, list(pylog.handlers))
    try:
        with logs.to_log_file():
            warnings.warn("TracerWarning: converting a tensor to a Python boolean", UserWarning)
            assert os.environ["TQDM_DISABLE"] == "1"
    finally:
        root.removeHandler(handler)
        handler.close()
    err = capsys.readouterr().err
    assert "TracerWarning" not in err
    assert "TracerWarning: converting a tensor" in log_file.read_text()
    # only the block is quieted: warnings and the environment are as they were after it
    assert (pylog.propagate, list(pylog.handlers)) == state and os.environ.get("TQDM_DISABLE") == before


def test_the_libraries_own_log_lines_reach_the_log_file_not_the_terminal(tmp_path, capsys):
    log_file = tmp_path / "job.log"
    handler = logging.FileHandler(log_file)
    console = logging.StreamHandler()  # the terminal, as Hydra's console handler
    root = logging.getLogger()
    root.addHandler(handler)
    root.addHandler(console)
    tf = logging.getLogger("transformers.modeling_utils")
    state = (logging.getLogger("transformers").propagate, list(logging.getLogger("transformers").handlers))
    try:
        with logs.to_log_file():
            tf.warning("`torch_dtype` is deprecated! Use `dtype` instead!")
        logging.getLogger("pipeline.job.run").warning("our own line")
    finally:
        root.removeHandler(handler)
        root.removeHandler(console)
        handler.close()
    err = capsys.readouterr().err
    assert "torch_dtype" not in err and "our own line" in err
    assert "torch_dtype" in log_file.read_text()
    assert (logging.getLogger("transformers").propagate, list(logging.getLogger("transformers").handlers)) == state
