"""Records are looked up by key (config hash, sweep), through an index, not by reading them all."""

from __future__ import annotations

import shutil

from pipeline.tracking import records


def _rec(root, chash: str, **tags):
    rec = records.RunRecord.new("r", {}, {"config_hash": chash, **tags})
    rec.status = "ok"
    records.save(records.folder(root, rec.record_id), rec)
    return rec


def test_find_returns_exactly_the_records_with_that_key(tmp_path):
    a1, _, a2 = _rec(tmp_path, "aaa"), _rec(tmp_path, "bbb"), _rec(tmp_path, "aaa", **{"sweep.key": "k"})
    assert [r.record_id for _, r in records.find(tmp_path, "config_hash", "aaa")] == [a1.record_id, a2.record_id]
    assert [r.record_id for _, r in records.find(tmp_path, "sweep.key", "k")] == [a2.record_id]
    assert records.find(tmp_path, "config_hash", "zzz") == []


def test_a_lookup_reads_only_the_records_it_names(tmp_path, monkeypatch):
    for i in range(30):
        _rec(tmp_path, f"other{i}")
    mine = _rec(tmp_path, "mine")
    read = []
    real = records.load
    monkeypatch.setattr(records, "load", lambda p: read.append(p) or real(p))
    assert [r.record_id for _, r in records.find(tmp_path, "config_hash", "mine")] == [mine.record_id]
    assert len(read) == 1


def test_an_old_records_folder_is_indexed_on_first_lookup(tmp_path):
    rec = _rec(tmp_path, "old")
    shutil.rmtree(tmp_path / records.INDEX)  # written before the index existed
    assert [r.record_id for _, r in records.find(tmp_path, "config_hash", "old")] == [rec.record_id]


def test_a_removed_or_retagged_record_is_not_found(tmp_path):
    gone, kept = _rec(tmp_path, "h"), _rec(tmp_path, "h")
    shutil.rmtree(records.folder(tmp_path, gone.record_id))
    assert [r.record_id for _, r in records.find(tmp_path, "config_hash", "h")] == [kept.record_id]
    kept.tags["config_hash"] = "h2"
    records.write(records.folder(tmp_path, kept.record_id), kept)
    assert records.find(tmp_path, "config_hash", "h") == []
    assert [r.record_id for _, r in records.find(tmp_path, "config_hash", "h2")] == [kept.record_id]
