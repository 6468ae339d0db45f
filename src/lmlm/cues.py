"""The words that led to each relation's calls in training text, for the engine's relation prior.

A model trained from scratch knows only its corpus's cue words. The relation prior (``GenerationConfig.
relation_prior``) lets a pretrained sentence encoder read a cue the model never saw ("is on the payroll of") and
tip the call's relation. A relation's name alone ("Employer") is a thin thing to compare a sentence with; the
sentences its calls stood in during training ("works for", "is employed by", "took a job at") say how the corpus
words it. So for every relation this table keeps the most frequent of those sentences, each with the call's entity
left out, read the same way the engine reads the sentence before a call (``call_context``).

    lmlm cues --model MODEL --corpus corpus.json ...   # writes MODEL/relation_cues.json, which LMLM.from_pretrained loads
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lmlm import markup
from lmlm.errors import LmlmError
from lmlm.files import atomic_write

CUES_FILE = "relation_cues.json"  # in a checkpoint folder
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass
class CuesConfig:
    model: str = field(metadata={"help": "the checkpoint folder the table is written into"})
    corpus: list[str] = field(metadata={"help": "annotated corpora the model was trained on (the lmlm-mode training text)"})
    per_relation: int = field(default=32, metadata={"help": "keep this many of each relation's most frequent cue sentences"})


def call_context(before: str, entity: str) -> str:
    """The sentence a call stands in, up to the call, with the call's entity left out: what the relation's cue
    words are read from."""
    sentence = SENTENCE_END.split(before)[-1]
    if entity:
        sentence = re.sub(rf"(?<!\w){re.escape(entity)}(?!\w)", " ", sentence)
    return " ".join(sentence.split())


def harvest(texts: Iterable[str], per_relation: int = 32) -> dict[str, list[str]]:
    """Each relation's most frequent call contexts in the annotated ``texts``, most frequent first."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for text in texts:
        before = ""
        for segment in markup.parse(text).segments:
            if isinstance(segment, str):
                before += segment
            elif context := call_context(before, segment.entity):
                counts[segment.relation][context] += 1
    return {relation: [c for c, _ in found.most_common(per_relation)] for relation, found in sorted(counts.items())}


def build_cues(cfg: CuesConfig) -> Path:
    """The cue table of the corpora, saved into the checkpoint folder."""
    from lmlm.data import documents

    if not Path(cfg.model).is_dir():
        raise LmlmError(f"{cfg.model}: no such checkpoint folder")
    if cfg.per_relation < 1:
        raise LmlmError(f"per_relation must be at least 1, not {cfg.per_relation}")
    return save(harvest(documents(cfg.corpus, "lmlm"), cfg.per_relation), Path(cfg.model) / CUES_FILE)


def save(cues: dict[str, list[str]], path: Path) -> Path:
    with atomic_write(path) as f:
        json.dump(cues, f, ensure_ascii=False, indent=0)
    return path


def load(path: str | Path) -> dict[str, list[str]]:
    try:
        cues = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise LmlmError(f"{path}: not a cue table written by 'lmlm cues' ({type(e).__name__}: {e})") from None
    if not isinstance(cues, dict) or not all(isinstance(v, list) and all(isinstance(c, str) for c in v) for v in cues.values()):
        raise LmlmError(f"{path}: a cue table maps each relation to a list of sentences")
    return cues
