"""The Python API: ``LMLM.from_pretrained(path, kb=...).generate(prompts)``, loading a checkpoint folder
with errors that name the file at fault, and ``generate_file`` for JSONL prompts."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from lmlm.engine.config import GenerationConfig
from lmlm.engine.loop import LookupEngine
from lmlm.errors import LmlmError
from lmlm.ngrams import NGRAMS_FILE, NgramTable
from lmlm.tokenizer import check_lookup_tokens

WEIGHTS_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")  # the file that holds the vocabulary, by kind of tokenizer


class LMLM:
    """A checkpoint and a knowledge base: ``LMLM.from_pretrained(path, kb=...).generate(prompts)``."""

    def __init__(self, model, tokenizer, kb=None, compile: bool = False, draft_model=None, ngrams: NgramTable | None = None):
        self.engine = LookupEngine(model, tokenizer, kb, compile=compile, draft_model=draft_model, ngrams=ngrams)

    @property
    def model(self):
        return self.engine.model

    @property
    def tokenizer(self):
        return self.engine.tokenizer

    @property
    def kb(self):
        return self.engine.kb

    @classmethod
    def from_pretrained(cls, path: str | Path, kb=None, use_lookups: bool = True, compile: bool = False, draft_model: str | Path | None = None,
                        **model_kwargs) -> LMLM:
        """``draft_model``: the folder of a smaller checkpoint with the same tokenizer, to propose tokens (see
        ``lmlm.draft``). An n-gram table in the checkpoint folder (``lmlm ngrams``) is loaded to draft from."""
        tokenizer, model = load_tokenizer(path), load_model(path, **model_kwargs)
        draft = load_model(draft_model, **model_kwargs) if draft_model else None
        if use_lookups:
            check_lookup_tokens(tokenizer, path)
        if isinstance(kb, (str, Path)):
            from lmlm.kb import open_kb

            kb = open_kb(kb)
        table = Path(path) / NGRAMS_FILE
        return cls(model, tokenizer, kb, compile=compile, draft_model=draft, ngrams=NgramTable.load(table) if table.is_file() else None)

    def generate(self, prompts: str | Sequence[str], batch_size: int = 32, on_token=None, **options):
        """One result for a string, a list of results for a list; ``options`` are GenerationConfig fields."""
        single = isinstance(prompts, str)
        cfg = replace(GenerationConfig(), **options)
        items = [prompts] if single else list(prompts)
        results = []
        for start in range(0, len(items), batch_size):
            stream = functools.partial(_offset_rows, on_token, start) if on_token else None  # rows count across the batches
            results += self.engine.generate(items[start : start + batch_size], cfg, stream)
        return results[0] if single else results


def _offset_rows(on_token, offset: int, row: int, token: int, forced: bool):
    on_token(offset + row, token, forced)


def generate_file(lmlm: LMLM, src: str | Path, out: str | Path, batch_size: int = 32, **options) -> int:
    """Generate for every ``{"prompt"}`` line of ``src`` in batches; write each line back with its result."""
    from tqdm.auto import tqdm

    from lmlm.corpus import read_corpus
    from lmlm.files import atomic_write

    rows = read_corpus(src, require=("prompt",)).examples
    with atomic_write(out) as f:
        for start in tqdm(range(0, len(rows), batch_size), desc="generating", unit="batch"):
            batch = rows[start : start + batch_size]
            for row, result in zip(batch, lmlm.generate([r["prompt"] for r in batch], batch_size=batch_size, **options)):
                f.write(json.dumps({**row, **result.to_dict()}, ensure_ascii=False) + "\n")
    return len(rows)


# --- loading a checkpoint ------------------------------------------------------------------------------------------


def load_model(folder: str | Path, **kwargs):
    """The causal LM of a local checkpoint folder. A missing folder or a missing or damaged file is an
    LmlmError of one line that names it (transformers would say "Repo id must be in the form..." for a
    folder that does not exist, and give tracebacks for damaged files)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = _checkpoint_folder(folder)
    _loading(folder / "config.json", "the model's config", AutoConfig.from_pretrained, folder)
    weights = next((folder / name for name in WEIGHTS_FILES if (folder / name).is_file()), None)
    if weights is None:
        raise LmlmError(f"{folder}: no weights file ({', '.join(WEIGHTS_FILES)}); not a checkpoint folder")
    return _loading(weights, "the model", AutoModelForCausalLM.from_pretrained, folder, **kwargs)


def load_tokenizer(folder: str | Path):
    """The tokenizer of a local checkpoint folder; errors as ``load_model``'s."""
    from transformers import AutoTokenizer

    folder = _checkpoint_folder(folder)
    for name in ("tokenizer_config.json", "tokenizer.json", "special_tokens_map.json"):
        _check_json(folder / name)
    vocabulary = next((folder / name for name in TOKENIZER_FILES if (folder / name).is_file()), None)
    if vocabulary is None:
        raise LmlmError(f"{folder}: no tokenizer file ({', '.join(TOKENIZER_FILES)}); save the tokenizer with the model")
    return _loading(vocabulary, "the tokenizer", AutoTokenizer.from_pretrained, folder)


def _checkpoint_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not folder.exists():
        raise LmlmError(f"{folder}: no such model folder")
    if not folder.is_dir():
        raise LmlmError(f"{folder}: not a folder; give a checkpoint folder (config.json, model.safetensors, tokenizer.json)")
    if not (folder / "config.json").is_file():
        raise LmlmError(f"{folder}: no config.json; not a checkpoint folder")
    _check_json(folder / "config.json")  # the tokenizer reads it too
    return folder


def _check_json(path: Path):
    """A JSON file of the checkpoint, if there, must parse: else transformers' error would not say which file."""
    if path.is_file():
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise LmlmError(f"{path}: not valid JSON ({_one_line(e)})") from None


def _loading(path: Path, what: str, load, *args, **kwargs):
    """``load(*args, **kwargs)``, with any failure reported as an LmlmError that names ``path``."""
    try:
        return load(*args, **kwargs)
    except Exception as e:  # transformers, tokenizers, safetensors and torch each raise their own types for a damaged file
        raise LmlmError(f"{path}: cannot load {what} ({_one_line(e)})") from None


def _one_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
