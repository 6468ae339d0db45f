"""The words that lead to each relation's calls in training text, for the engine's relation prior.

The relation prior (``GenerationConfig.relation_prior``) scores each relation a call may take by how close, under
the KB's sentence encoder, the sentence the call stands in is to the relation. A relation's name alone is a terse
description ("Employer", "Headquarters"); the sentences that lead to its calls in the model's training text say how
text asks for it ("works for", "is on the staff of", "has its head office in"). With a cue table in the checkpoint
folder, a relation is represented by its name and the centroid of its cue sentences, weighted equally, so a
phrasing the model never saw is read against both; a relation the table lacks (a fact added to the KB after
training) keeps its name alone.

A cue sentence is what the engine reads before a call: the text so far with the calls stripped, its last sentence,
the call's entity left out (``cue_sentence``). The table keeps each relation's most frequent cue sentences with
their counts.

    lmlm cues --model MODEL --corpus corpus.json ...   # writes MODEL/relation_cues.json, which LMLM.from_pretrained loads
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from lmlm import markup
from lmlm.corpus import read_corpus
from lmlm.errors import LmlmError
from lmlm.files import atomic_write

CUES_FILE = "relation_cues.json"  # in a checkpoint folder
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass
class CuesConfig:
    model: str = field(metadata={"help": "the checkpoint folder, where the table is written"})
    corpus: list[str] = field(metadata={"help": "annotated corpora the model was trained on"})
    per_relation: int = field(default=64, metadata={"help": "keep each relation's this many most frequent cue sentences"})


def cue_sentence(text: str, entity: str) -> str:
    """The last sentence of ``text`` (plain text before a call), the call's ``entity`` left out, spaces collapsed."""
    sentence = SENTENCE_END.split(text)[-1]
    if entity:
        sentence = re.sub(rf"(?<!\w){re.escape(entity)}(?!\w)", " ", sentence)
    return " ".join(sentence.split())


def count_cues(texts, per_relation: int) -> dict[str, dict[str, int]]:
    """Each relation's ``per_relation`` most frequent cue sentences in the annotated ``texts``, with their counts."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for text in texts:
        plain = ""
        for segment in markup.parse(text).segments:
            if isinstance(segment, str):
                plain += segment
            elif sentence := cue_sentence(plain, segment.entity):
                counts[segment.relation][sentence] += 1
    return {relation: dict(sentences.most_common(per_relation)) for relation, sentences in sorted(counts.items())}


def build_relation_cues(cfg: CuesConfig) -> Path:
    """The cue table of the corpora, saved into the checkpoint folder."""
    if cfg.per_relation < 1:
        raise LmlmError(f"--per-relation must be at least 1, not {cfg.per_relation}")
    if not Path(cfg.model).is_dir():
        raise LmlmError(f"{cfg.model}: not a checkpoint folder")
    texts = (example["annotated_text"] for path in cfg.corpus for example in read_corpus(path).examples)
    path = Path(cfg.model) / CUES_FILE
    with atomic_write(path) as f:
        json.dump(count_cues(texts, cfg.per_relation), f, ensure_ascii=False, indent=0)
    return path


def load_relation_cues(path: str | Path) -> dict[str, dict[str, int]]:
    try:
        table = json.loads(Path(path).read_text())
        if not isinstance(table, dict):
            raise TypeError("not an object")
        cues = {str(relation): {str(s): int(n) for s, n in sentences.items()} for relation, sentences in table.items()}
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise LmlmError(f"{path}: not a cue table written by 'lmlm cues' ({type(e).__name__}: {e})") from None
    if any(n < 1 for sentences in cues.values() for n in sentences.values()):
        raise LmlmError(f"{path}: a cue sentence's count must be at least 1")
    return cues
