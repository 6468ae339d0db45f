"""Drop-in names of the reference implementation (kilian-group/LMLM), as a thin layer over our engine
and knowledge base, so code written against it runs unchanged:

    from lmlm.compat import DatabaseManager, LlamaForLMLM, load_model_and_tokenizer
    db = DatabaseManager(); db.load_database("database.json")
    model = LlamaForLMLM.from_pretrained_with_db(path, db_manager=db, use_special_tokens=True)
    raw = model.generate_with_lookup(prompt, tokenizer, max_new_tokens=256, enable_dblookup=True, enable_postprocess=False)
    text = model.post_process(raw, tokenizer)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

from lmlm import markup
from lmlm.engine import GenerationConfig, LookupEngine, choose_value
from lmlm.kb import SqliteKB
from lmlm.kb.io import read_reference_db
from lmlm.options import compat_keywords


class DatabaseLookupError(Exception):
    """Raised by ``retrieve_from_database`` when nothing clears the threshold."""


class DatabaseManager:
    """The reference's database object, backed by a temporary SQLite KB."""

    def __init__(self):
        self._dir = tempfile.TemporaryDirectory(prefix="lmlm-db-")
        self.kb = SqliteKB(Path(self._dir.name) / "kb.sqlite", create=True)
        self.threshold: float | None = None

    def load_database(self, path: str) -> None:
        self.kb.import_triplets(read_reference_db(path))

    def init_topk_retriever(self, default_threshold: float | None = None) -> None:
        self.threshold = default_threshold

    def retrieve_from_database(self, text: str, threshold: float | None = None) -> str:
        """The value for the last open query in ``text`` ("... <|db_entity|> E<|db_relationship|> R<|db_return|>")."""
        call = text.rsplit(markup.DB_ENTITY, 1)[-1]
        entity, _, relation = call.partition(markup.DB_RELATIONSHIP)
        relation = relation.split(markup.DB_RETURN, 1)[0]
        # a threshold of 0 or less takes the nearest fact, as the engine's top1_anyway fallback does
        fallback = "top1_anyway" if threshold is not None and threshold <= 0 else "abstain"
        chosen = choose_value(self.kb.lookup(entity.strip(), relation.strip()), fallback)
        if chosen.triplet is None:
            raise DatabaseLookupError(f"no fact for ({entity.strip()!r}, {relation.strip()!r})")
        return chosen.value


class LlamaForLMLM(LlamaForCausalLM):
    """``LlamaForCausalLM`` with the reference's lookup API, generating through our batched engine."""

    @classmethod
    def from_pretrained_with_db(cls, model_path, db_manager=None, use_special_tokens=True, threshold=None, fallback_policy=None, **kwargs):
        config = AutoConfig.from_pretrained(model_path, **kwargs)
        model = cls.from_pretrained(model_path, config=config, **kwargs)
        model.db_manager = db_manager
        model.use_special_tokens = use_special_tokens
        model.fallback_policy = fallback_policy or "top1_anyway"
        if db_manager is not None:
            db_manager.init_topk_retriever(default_threshold=threshold)
        return model

    def generate_with_lookup(self, prompt, tokenizer, enable_dblookup=True, enable_postprocess=True, **kwargs):
        cfg = _generation_config({**kwargs, "enable_dblookup": enable_dblookup}, getattr(self, "fallback_policy", "top1_anyway"))
        kb = self.db_manager.kb if getattr(self, "db_manager", None) is not None else None
        result = LookupEngine(self, tokenizer, kb).generate([prompt], cfg)[0]
        return self.post_process(result.raw, tokenizer) if enable_postprocess else result.raw

    def post_process(self, output_text, tokenizer):
        for token in (tokenizer.bos_token, tokenizer.eos_token):
            if token:
                output_text = output_text.replace(token, "")
        return markup.strip(output_text).strip()


def _generation_config(kwargs: dict, fallback: str) -> GenerationConfig:
    """The engine's config from the reference's keywords (and its defaults), as ``GenerationConfig`` declares them."""
    chosen = {name: kwargs.get(keyword, default) for keyword, (name, default) in compat_keywords().items()}
    chosen["temperature"] = chosen["temperature"] or 1.0  # the reference's scripts pass 0.0 or None when they mean no scaling
    return GenerationConfig(**chosen, fallback=fallback)


def load_model_and_tokenizer(model_path, database_path=None, model_args=None, device="cpu"):
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    db_manager = None
    if database_path:
        db_manager = DatabaseManager()
        db_manager.load_database(database_path)
    model = LlamaForLMLM.from_pretrained_with_db(model_path, db_manager=db_manager, **(model_args or {}))
    return model.to(device), tokenizer
