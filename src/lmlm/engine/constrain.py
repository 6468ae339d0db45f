"""KB-constrained lookup decoding (the idea of GENRE, De Cao et al. 2021, applied to lookup calls).

While a call's relation is written (after <|db_relationship|>), a row may only write tokens that continue one
of the relations its entity holds in the KB, and <|db_return|> once a whole one is written; with
``entity_relation`` the entity (after <|db_entity|>) is held to the KB's entity names the same way, closed by
<|db_relationship|>. Names are tokenized as training text has them: a leading space after the lookup token.

A call the model did not mean must not be forced onto a stored fact: each constrained step adds what the mask
cost (the log-probability of the model's own best token minus that of the token taken), and once a call's cost
passes ``constrain_margin`` the mask is lifted, the model writes what it meant, and the call is answered as
a miss (the fallback decides its value).

Tries: one per entity, keyed by the set of its relations, so an edit to the entity's facts makes the next call
build a new one (a call reads the entity's facts once); one over all entity names, rebuilt when the KB's
``version`` changes. A trie is nested dicts from token id to child, with ``END`` marking a whole name.
"""

from __future__ import annotations

import torch

from lmlm.engine.config import GenerationConfig, LookupTokens
from lmlm.engine.sampling import choose
from lmlm.engine.state import Batch, RowState
from lmlm.errors import NotFound

END = -1
MAX_CACHED_ENTITIES = 100_000  # relation tries kept; the cache starts over past this, so memory stays bounded


def build_trie(sequences) -> dict:
    root: dict = {}
    for sequence in sequences:
        node = root
        for token in sequence:
            node = node.setdefault(token, {})
        node[END] = True
    return root


def walk(trie: dict, prefix: list[int]) -> dict | None:
    """The node that ``prefix`` leads to, or None when it leaves the trie."""
    node = trie
    for token in prefix:
        node = node.get(token)
        if node is None:
            return None
    return node


class CallConstraints:
    """The tries of one engine's KB, and the constrained choice of a step's tokens."""

    def __init__(self, kb, tokenizer, tokens: LookupTokens):
        self.kb, self.tokenizer, self.tokens = kb, tokenizer, tokens
        self._relations: dict[str, tuple[frozenset[str], dict]] = {}
        self._entities: tuple[object, dict] | None = None

    def _names_trie(self, names) -> dict:
        spelled = [" " + name for name in names]
        if not spelled:
            return build_trie([])
        # one batched call: the fast tokenizer spells many names far quicker than one encode each
        return build_trie(self.tokenizer(spelled, add_special_tokens=False, split_special_tokens=True)["input_ids"])

    def relation_trie(self, entity: str) -> dict | None:
        """The trie of the relations ``entity`` holds now (None for an entity the KB does not know)."""
        try:
            relations = frozenset(t.relation for t in self.kb.facts(entity))
        except NotFound:
            return None
        if not relations:
            return None
        cached = self._relations.get(entity)
        if cached is None or cached[0] != relations:
            if len(self._relations) >= MAX_CACHED_ENTITIES:
                self._relations.clear()
            cached = self._relations[entity] = (relations, self._names_trie(relations))
        return cached[1]

    def entity_trie(self) -> dict:
        version = self.kb.version()
        if self._entities is None or self._entities[0] != version:
            self._entities = None  # the old trie goes before the new one is built
            self._entities = (version, self._names_trie(self.kb.entity_names()))
        return self._entities[1]

    def allowed(self, row: RowState, mode: str) -> list[int] | None:
        """The tokens row may write next, or None when it is not in a constrained part of a call."""
        if row.call_start is None or row.call_miss:
            return None
        tokens = row.tokens
        if row.relation_start is None:
            if mode != "entity_relation":
                return None
            start, closer = row.call_start, self.tokens.relationship
        else:
            start, closer = row.relation_start, self.tokens.ret
        if row.call_trie is None or row.call_trie[0] != start:
            row.call_trie = (start, self.entity_trie() if closer == self.tokens.relationship else self._relations_of(row, tokens))
        trie = row.call_trie[1]
        node = walk(trie, tokens[start + 1 :]) if trie is not None else None
        if not node:  # an unknown entity, or a prompt that wrote a name the KB lacks: nothing to hold it to
            return None
        return [closer if t == END else t for t in node]

    def _relations_of(self, row: RowState, tokens: list[int]) -> dict | None:
        entity = self.tokenizer.decode(tokens[row.call_start + 1 : row.relation_start], skip_special_tokens=False).strip()
        return self.relation_trie(entity)

    def choose(self, batch: Batch, ids: list[int], scores: torch.Tensor) -> list[int]:
        """Each row's next token, among the allowed ones where its call is constrained; a call whose cost passes
        the margin becomes a miss, and its row takes its own choice."""
        cfg: GenerationConfig = batch.cfg
        masks = [self.allowed(batch.rows[i], cfg.constrain_lookups) for i in ids]
        constrained = [r for r, allowed in enumerate(masks) if allowed is not None]
        if not constrained:
            return choose(scores, cfg, batch.generator).tolist()
        masked = scores.clone()
        for r in constrained:
            keep = torch.full_like(masked[r], float("-inf"))
            keep[masks[r]] = masked[r, masks[r]]
            masked[r] = keep
        chosen = choose(masked, cfg, batch.generator).tolist()
        logp = scores[constrained].log_softmax(-1)
        for k, r in enumerate(constrained):
            row = batch.rows[ids[r]]
            row.call_cost += float(logp[k].max() - logp[k, chosen[r]])
            if row.call_cost > cfg.constrain_margin:
                row.call_miss = True
                chosen[r] = int(choose(scores[r : r + 1], cfg, batch.generator)[0])
        return chosen
