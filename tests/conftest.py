"""Shared fixtures: tiny random models built locally (seconds, no download)."""

from __future__ import annotations

import csv
import json
import os
import random
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"


def render_results():
    """scripts/render_results.py as a module (the script that writes the docs' measured tables)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("render_results", ROOT / "scripts" / "render_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = (
    "a the man woman child dog cat is are was playing riding eating running guitar horse "
    "food ball field music car road tree bird plane sky water people two group of on in with "
    "and to at red blue green big small happy sad fast slow good bad new old"
).split()


def _bert_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!?'-")
    vocab_list = specials + letters + ["##" + c for c in letters] + WORDS
    vocab = {t: i for i, t in enumerate(dict.fromkeys(vocab_list))}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    tok.decoder = decoders.WordPiece()
    fast = BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
    )
    fast.save_pretrained(folder)


def _sentence_transformers_files(folder: Path, dim: int, pooling: str = "mean") -> None:
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
            ]
        )
    )
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": False}))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": dim,
                "pooling_mode_cls_token": pooling == "cls",
                "pooling_mode_mean_tokens": pooling == "mean",
                "pooling_mode_max_tokens": pooling == "max",
                "pooling_mode_lasttoken": pooling == "last_token",
            }
        )
    )
    (folder / "2_Normalize").mkdir(exist_ok=True)


def build_tiny_bert(folder: Path, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """A random 2-layer BERT with a WordPiece tokenizer, saved as a sentence-transformers folder."""
    import torch
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    _bert_tokenizer(folder)
    vocab_size = len(json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"])
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    BertModel(config).eval().save_pretrained(folder, safe_serialization=True)
    _sentence_transformers_files(folder, hidden)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert") / "model")


@pytest.fixture(scope="session")
def tiny_sts_dir(tmp_path_factory) -> Path:
    """A small STS-format data folder (stsb/stsb-en-{dev,test}.csv) made of random pairs."""
    root = tmp_path_factory.mktemp("data")
    (root / "stsb").mkdir()
    rng = random.Random(0)
    for split, n in (("dev", 40), ("test", 60)):
        with open(root / "stsb" / f"stsb-en-{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            for i in range(n):
                s1 = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
                s2 = s1 if i % 3 == 0 else " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
                w.writerow([s1, s2, 5.0 if i % 3 == 0 else round(rng.uniform(0, 5), 2)])
    return root


def tiny_overrides(model_dir: Path, data_dir: Path, tmp: Path) -> list[str]:
    """Hydra overrides that point a job at a tiny local model, tiny data and a private store."""
    from pipeline.core.cache import sha256_file

    return [
        "model.name=tiny-bert",
        "model.source=local",
        f"model.path={model_dir}",
        f"model.sha256={sha256_file(model_dir / 'model.safetensors')}",
        "model.max_length=64",
        f"quality.data_dir={data_dir}",
        "quality.dataset=own",  # random pairs, not the pinned STS Benchmark
        "quality.parity_sentences=8",
        f"tracking.uri=sqlite:///{tmp}/mlflow.db",
        f"tracking.artifact_location={tmp}/artifacts",
        f"cache_dir={tmp}/cache",
        f"reports_dir={tmp}/reports",
        f"records_dir={tmp}/records",
        "bench.warmup=2",
        "bench.iterations=20",
        "bench.min_iterations=5",
        "bench.max_seconds=2",
        # a contended tiny benchmark is measured again at once (the default waits 5 s a retry)
        "bench.contention.retries=1",
        "bench.contention.retry_wait_s=0.2",
        # sweeps re-time their leaders only where a test asks for it (tests/test_sweep.py)
        "decision.retime.rounds=0",
    ]


@pytest.fixture
def compose():
    """compose(overrides) -> the composed DictConfig, as `python -m pipeline` would see it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from pipeline.config import register_configs

    register_configs()

    def _compose(overrides: list[str] | None = None, config_name: str = "config"):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            return hydra_compose(config_name=config_name, overrides=overrides or [])

    yield _compose
    GlobalHydra.instance().clear()
