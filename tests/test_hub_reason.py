"""A hub model that cannot be had offline is skipped with what happened, not the hub library's advice."""

from __future__ import annotations

import huggingface_hub
import pytest

from pipeline.config.job import ModelConfig
from pipeline.model import sources


def test_an_offline_hub_model_is_unavailable_without_the_libraries_advice(monkeypatch):
    def offline(*args, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError(
            "Cannot find an appropriate cached snapshot folder for the specified revision on the local disk and outgoing "
            "traffic has been disabled. To enable repo look-ups and downloads online, pass 'local_files_only=False' as input."
        )

    monkeypatch.setattr(sources, "_hub_reachable", lambda timeout=2.0: False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(sources.ModelUnavailable) as err:
        sources._hub_folder(ModelConfig(name="some-model", hub_id="org/some-model"))
    text = str(err.value)
    assert "local_files_only" not in text and "outgoing traffic" not in text
    assert "no network to the model hub" in text and "model.source=local" in text
