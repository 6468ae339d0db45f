"""KB-constrained lookup decoding (the idea of GENRE, De Cao et al. 2021, applied to lookup calls).

While a call's relation is written (after <|db_relationship|>), a row may only write tokens that continue one
of the relations its entity holds in the KB, and <|db_return|> once a whole one is written; with
``entity_relation`` the entity (after <|db_entity|>) is held to the KB's entity names the same way, closed by
<|db_relationship|>. Names are tokenized as training text has them: a leading space after the lookup token.

A call the model did not mean must not be forced onto a stored fact: each constrained step adds what the mask cost
(the log-probability of the model's own best token minus that of the token taken; in a relation, that of its best
token the mask shuts out minus that of its best allowed one, or nothing where an allowed token is its best; in an
entity, with the mention prior's bonuses added; both below), and once a call's cost passes ``constrain_margin`` the
mask is lifted, the model writes what it meant, and the call is answered as a miss (the fallback decides its value).

A model trained from scratch knows only the cue words of its corpus: "is on the payroll of" means nothing to it. With
``relation_prior`` w > 0, each relation the mask allows gets w times the cosine similarity, under the KB's sentence
encoder, between that relation's name and the sentence the call stands in (its entity left out), so a pretrained
encoder's reading of the cue can tip a choice the model is unsure of. A token's bonus is that of the best relation it
leads to. Likewise a tiny model copies a name it never saw badly ("Wren Mossfield works as a" gives a call about
"Amara Mossworth"); with ``mention_prior`` w > 0, under ``entity_relation``, each token that continues a KB entity
named in the text before the call, or returned there by a call, gets w. That bonus is evidence about what the model
means, so the mask's cost counts it: in an entity, a step costs how far the token taken falls below the best token of
the model's scores plus the mention prior's bonuses, so a name the text holds is given up for the model's miscopy of
it only where the model prefers the miscopy by more than the bonus and the margin together. In a relation the margin
asks one thing: did the model mean a relation the entity lacks? So a step costs only how far the model's best allowed
token falls below its best token outside the mask, by its scores alone (nothing where an allowed token is its best).
Which held relation is written is for the model and the relation prior together: the model's confidence in one held
relation over another is no evidence of a missing fact, and counting it would turn every call the prior overrules by
more than the margin into a miss. The prior's bonus is not counted either: it goes to every relation the entity holds,
so counted it would offset up to w nats of the cost of every call whose relation the KB lacks, and the margin would
end far fewer of them.

With ``chain_prior`` the relation prior also weighs a call that would open right after a looked-up value: text
chains calls where it reaches a fact through a bridge it does not state ("the company she works for is based in"),
and a tiny model chains where the sentence asked for the first value only. <|db_entity|> there gets W times how
much better the call's sentence reads as one of the value's own relations than as the relation just answered.

Tries: one per entity, keyed by the set of its relations, so an edit to the entity's facts makes the next call
build a new one (a call reads the entity's facts once); one over all entity names, to which the names the KB
gained are added when its ``version`` changes. Forgotten entities keep their names there: held to the other names,
a call about one would be moved onto a neighbour's name ("Astrid Elmford" onto "Astrid Elmgate") and answered with
the neighbour's fact, where named as written its lookup is refused. A trie is nested dicts from token id to child,
with ``END`` marking a whole name.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from lmlm import markup
from lmlm.engine.config import GenerationConfig, LookupTokens
from lmlm.engine.sampling import choose
from lmlm.engine.state import Batch, RowState
from lmlm.errors import LmlmError, NotFound

END = -1
MAX_CACHED_ENTITIES = 100_000  # relation tries kept; the cache starts over past this, so memory stays bounded
CONTEXT_TOKENS = 64  # how far back the priors read the text before a call
MAX_CACHED_RELATIONS = 10_000  # relation vectors kept for the relation prior; the cache starts over past this
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def build_trie(sequences, names=None, root: dict | None = None) -> dict:
    """A trie of token sequences, or ``root`` with them added; ``END`` maps to each sequence's name when ``names`` are
    given (a relation trie's, for the prior), else to True (the entity trie would otherwise keep every name alive)."""
    root = {} if root is None else root
    for k, sequence in enumerate(sequences):
        node = root
        for token in sequence:
            node = node.setdefault(token, {})
        node[END] = names[k] if names is not None else True
    return root


def names_under(node: dict):
    """The whole names the trie holds at and below ``node``."""
    for token, child in node.items():
        if token == END:
            yield child
        else:
            yield from names_under(child)


def walk(trie: dict, prefix: list[int]) -> dict | None:
    """The node that ``prefix`` leads to, or None when it leaves the trie."""
    node = trie
    for token in prefix:
        node = node.get(token)
        if node is None:
            return None
    return node


def continues_word(tokenizer, ids: list[int]) -> bool:
    """Does the last token of ``ids`` go on with the word before it? Read from what it adds to the decoded text, as
    a SentencePiece decoder drops the leading space of a token decoded alone."""
    if len(ids) < 2:
        return False
    before = tokenizer.decode(ids[:-1])
    return tokenizer.decode(ids)[len(before) :][:1].isalnum()


class CallConstraints:
    """The tries of one engine's KB, and the constrained choice of a step's tokens."""

    def __init__(self, kb, tokenizer, tokens: LookupTokens):
        self.kb, self.tokenizer, self.tokens = kb, tokenizer, tokens
        self._relations: dict[str, tuple[frozenset[str], dict]] = {}
        self._entity_trie: dict = {}
        self._entity_names: set[str] = set()
        self._entity_version: object = object()  # no version a KB returns equals it: the first call reads the names
        self._relation_vectors: dict[str, np.ndarray] = {}

    def _names_trie(self, names: list[str], named: bool, root: dict | None = None) -> dict:
        if not names:
            return build_trie([], root=root)
        # one batched call: the fast tokenizer spells many names far quicker than one encode each
        spelled = self.tokenizer([" " + name for name in names], add_special_tokens=False, split_special_tokens=True)
        return build_trie(spelled["input_ids"], names if named else None, root)

    def _relations_held(self, entity: str) -> frozenset[str]:
        """The relations ``entity`` holds now (none for an entity the KB does not know)."""
        try:
            return frozenset(t.relation for t in self.kb.facts(entity))
        except NotFound:
            return frozenset()

    def relation_trie(self, entity: str) -> dict | None:
        """The trie of the relations ``entity`` holds now (None for an entity the KB does not know)."""
        relations = self._relations_held(entity)
        if not relations:
            return None
        cached = self._relations.get(entity)
        if cached is None or cached[0] != relations:
            if len(self._relations) >= MAX_CACHED_ENTITIES:
                self._relations.clear()
            cached = self._relations[entity] = (relations, self._names_trie(sorted(relations), named=True))
        return cached[1]

    def entity_trie(self) -> dict:
        """The trie of every entity name, brought up to date when the KB's version changes. A KB never drops a name
        (a forgotten entity keeps its own), so only the names not in it yet are spelled and added: an edit costs a
        read of the names, not a new trie."""
        version = self.kb.version()
        if version != self._entity_version:
            new_names = [name for name in self.kb.entity_names() if name not in self._entity_names]
            self._names_trie(new_names, named=False, root=self._entity_trie)
            self._entity_names.update(new_names)
            self._entity_version = version
        return self._entity_trie

    def open_node(self, row: RowState, cfg: GenerationConfig) -> dict | None:
        """The trie node of what row has written of its open call's constrained part, or None when it is not in one."""
        if row.call_start is None or row.call_miss:
            return None
        tokens = row.tokens
        if row.relation_start is None:
            if cfg.constrain_lookups != "entity_relation":
                return None
            start = row.call_start
        else:
            start = row.relation_start
        if row.call_trie is None or row.call_trie[0] != start:
            row.call_trie = (start, self._entities_of(row, tokens, cfg) if start == row.call_start else self._relations_of(row, tokens, cfg))
        trie = row.call_trie[1]
        node = walk(trie, tokens[start + 1 :]) if trie is not None else None
        return node or None  # an unknown entity, or a prompt that wrote a name the KB lacks: nothing to hold it to

    def allowed(self, row: RowState, node: dict) -> list[int]:
        closer = self.tokens.relationship if row.relation_start is None else self.tokens.ret
        return [closer if t == END else t for t in node]

    def _entities_of(self, row: RowState, tokens: list[int], cfg: GenerationConfig) -> dict:
        trie = self.entity_trie()
        row.mentioned = self._mentioned(tokens[: row.call_start], trie) if cfg.mention_prior else None
        return trie

    def _mentioned(self, before: list[int], trie: dict) -> list[list[int]]:
        """The spellings of the KB entities the text before a call names, or its calls returned (a chained call is
        about the value just looked up, which the text does not restate): the trie walked from each token of that
        text, spelt again with a leading space so that a name at its very start is spelt as the trie has it. A name
        must end where a word ends: "Ann Lee" is not named by "Ann Leeds". The text and the values are joined by
        full stops, so no name runs from one into the next."""
        document = markup.parse(self._window_text(before))
        text = " . ".join([document.plain, *(value for _, _, value in document.triplets)])
        ids = self.tokenizer(" " + text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        found = []
        for start in range(len(ids)):
            node = trie
            for end in range(start, len(ids)):
                node = node.get(ids[end])
                if node is None:
                    break
                if END in node and not (end + 1 < len(ids) and continues_word(self.tokenizer, ids[start : end + 2])):
                    found.append(ids[start : end + 1])
        return found

    def _plain_text(self, before: list[int]) -> str:
        """The text before a call that the relation prior reads, lookup calls removed."""
        return markup.strip(self._window_text(before))

    def _window_text(self, before: list[int]) -> str:
        """The last CONTEXT_TOKENS tokens before a call, calls kept; a window that starts inside an earlier call
        starts after it instead, or that call's relation and value would read as plain text."""
        window = before[-CONTEXT_TOKENS:]
        first_call_token = next((k for k, t in enumerate(window) if t in self.tokens.calls), None)
        if first_call_token is not None and window[first_call_token] != self.tokens.entity:
            window = window[window.index(self.tokens.end) + 1 :] if self.tokens.end in window else []
        return self.tokenizer.decode(window, skip_special_tokens=False)

    def _relations_of(self, row: RowState, tokens: list[int], cfg: GenerationConfig) -> dict | None:
        entity = self.tokenizer.decode(tokens[row.call_start + 1 : row.relation_start], skip_special_tokens=False).strip()
        trie = self.relation_trie(entity)
        row.relation_similarity = self._similarities(row, tokens[: row.call_start], entity, trie) if cfg.relation_prior and trie else None
        return trie

    def _similarities(self, row: RowState, before: list[int], entity: str, trie: dict) -> dict[str, float]:
        """Each relation of the trie's cosine similarity to the sentence the call stands in, its entity left out; the
        sentence's vector is kept in ``row.call_context`` for the chain's weight (``RowState.follow`` clears it as
        the call opens)."""
        sentence = call_sentence(self._plain_text(before), entity)
        relations = list(names_under(trie))
        if not sentence:
            return dict.fromkeys(relations, 0.0)
        vectors = self._relation_vectors_of(relations)
        row.call_context = context = unit_vectors(self._encoder().encode([sentence]))[0]
        return {r: float(vectors[r] @ context) for r in relations}

    def _encoder(self):
        encoder = getattr(self.kb, "encoder", None)
        if encoder is None:
            raise LmlmError(f"relation_prior needs a KB with a sentence encoder; {type(self.kb).__name__} has none")
        return encoder

    def _relation_vectors_of(self, relations: list[str]) -> dict[str, np.ndarray]:
        """The unit vectors of the relations' names, each encoded once (the cache starts over past its bound)."""
        missing = [r for r in relations if r not in self._relation_vectors]
        if len(self._relation_vectors) + len(missing) > MAX_CACHED_RELATIONS:
            self._relation_vectors.clear()
            missing = relations
        if missing:
            self._relation_vectors.update(zip(missing, unit_vectors(self._encoder().encode(missing))))
        return {r: self._relation_vectors[r] for r in relations}

    def chain_bonus(self, row: RowState, cfg: GenerationConfig) -> float:
        """The relation prior's weight on a call that would open right after a looked-up value (``chain_prior``):
        W times how much better the sentence the call stood in reads as one of the value's own relations than as
        the relation just answered. "X works for" is answered by the employer; "the company X works for is based in"
        goes on to the employer's headquarters. 0 where the value holds no relations or the call had no prior. Any
        call that would open there is weighed so, as a chain: one about another entity is rare right after a value."""
        last = row.lookups[-1] if row.lookups else None
        if row.call_context is None or not row.relation_similarity or last is None or not last.value:
            return 0.0
        answered = row.relation_similarity.get(last.relation)
        held = self._relations_held(last.value)
        if answered is None or not held:
            return 0.0
        vectors = self._relation_vectors_of(sorted(held))
        return cfg.relation_prior * (max(float(v @ row.call_context) for v in vectors.values()) - answered)

    def weigh_chains(self, batch: Batch, ids: list[int], scores: torch.Tensor) -> None:
        """Add each row's chain bonus to <|db_entity|> where a call would follow its value at once: right after
        <|db_end|>, or after the lone space that comes before a call."""
        end, space = self.tokens.end, self.tokens.space
        for r, i in enumerate(ids):
            row = batch.rows[i]
            last = row.generated[-2:]
            if last[-1:] == [end] or last == [end, space]:
                scores[r, self.tokens.entity] += self.chain_bonus(row, batch.cfg)

    def bonus(self, row: RowState, node: dict, cfg: GenerationConfig) -> list[float]:
        """The prior of each allowed token (in ``allowed``'s order): in a relation, that of the best relation it
        leads to; in an entity, the mention prior where it continues a name the text before the call holds."""
        if row.relation_start is None:
            written = row.tokens[row.call_start + 1 :]
            continuing = {name[len(written)] if len(name) > len(written) else END
                          for name in row.mentioned or () if name[: len(written)] == written}
            return [cfg.mention_prior * (t in continuing) for t in node]
        similarity = row.relation_similarity
        if not similarity:
            return [0.0] * len(node)
        return [cfg.relation_prior * (similarity[child] if t == END else max(similarity[n] for n in names_under(child)))
                for t, child in node.items()]

    def choose(self, batch: Batch, ids: list[int], scores: torch.Tensor) -> list[int]:
        """Each row's next token, among the allowed ones where its call is constrained; a call whose cost passes
        the margin becomes a miss, and its row takes its own choice."""
        cfg: GenerationConfig = batch.cfg
        if cfg.chain_prior and cfg.relation_prior:
            self.weigh_chains(batch, ids, scores)
        nodes = [self.open_node(batch.rows[i], cfg) for i in ids]
        constrained = [r for r, node in enumerate(nodes) if node is not None]
        if not constrained:
            return choose(scores, cfg, batch.generator).tolist()
        masked = scores.clone()
        allowed_of, bonus_of = {}, {}
        for r in constrained:
            row, node = batch.rows[ids[r]], nodes[r]
            allowed_of[r] = allowed = self.allowed(row, node)
            keep = torch.full_like(masked[r], float("-inf"))
            keep[allowed] = masked[r, allowed]
            if cfg.relation_prior or cfg.mention_prior:
                bonus_of[r] = bonus = masked.new_tensor(self.bonus(row, node, cfg))
                keep[allowed] += bonus
            masked[r] = keep
        chosen = choose(masked, cfg, batch.generator).tolist()
        logp = scores[constrained].log_softmax(-1)
        for k, r in enumerate(constrained):
            row = batch.rows[ids[r]]
            row.call_cost += self.step_cost(row, logp[k], chosen[r], allowed_of[r], bonus_of.get(r), cfg)
            if row.call_cost > cfg.constrain_margin:
                row.call_miss = True
                chosen[r] = int(choose(scores[r : r + 1], cfg, batch.generator)[0])
        return chosen

    @staticmethod
    def step_cost(row: RowState, logp: torch.Tensor, chosen: int, allowed: list[int], bonus, cfg: GenerationConfig) -> float:
        """What the mask cost this step (see the module's docstring): in a relation, how far the model's best
        allowed token falls below its best token outside the mask (nothing where an allowed token is its best); in an
        entity, how far the token taken falls below the best of the model's scores plus the mention prior's bonuses."""
        if row.relation_start is not None:  # the best token overall is either allowed (no cost) or the best outside
            return float(logp.max() - logp[allowed].max())
        if cfg.mention_prior and bonus is not None:
            logp = logp.index_add(0, torch.tensor(allowed, device=logp.device), bonus)
        return float(logp.max() - logp[chosen])


def call_sentence(text_before: str, entity: str) -> str:
    """The sentence a call stands in, as the relation prior reads it: the last sentence of the plain text before the
    call, its entity left out (a name says nothing about which relation is asked)."""
    sentence = SENTENCE_END.split(text_before)[-1]
    if entity:
        sentence = re.sub(rf"(?<!\w){re.escape(entity)}(?!\w)", " ", sentence)
    return markup.normalize_whitespace(sentence)


def unit_vectors(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
