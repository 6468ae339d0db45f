"""KB-constrained lookup decoding, fast: the scripted LM of ``test_engine_unit`` (it writes the calls of its
stories, whatever the KB holds) with a real tokenizer and a real SQLite KB."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_engine_unit import LMLMScript, ScriptedLM

from lmlm.engine import GenerationConfig, LookupEngine
from lmlm.engine.config import Provenance
from lmlm.engine.constrain import END, continues_word
from lmlm.engine.state import RowState
from lmlm.kb import SqliteKB
from lmlm.kb.encoder import HashingEncoder
from lmlm.tokenizer import train_tokenizer

STORIES = [
    "Ada Ashby lives in <|db_entity|> Ada Ashby<|db_relationship|> Residence<|db_return|>",
    "Ada Ashbe moved to <|db_entity|> Ada Ashbe<|db_relationship|> Home City<|db_return|>",
    "Bram Oakley lives in <|db_entity|> Bram Oakley<|db_relationship|> Home City<|db_return|>",
]
FREE = dict(max_new_tokens=40, ngram_drafts=False, draft_values=False, fallback="unknown")
LOOSE = dict(FREE, constrain_margin=1000.0)  # the margin never ends a call: the constraint alone decides


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer([*STORIES, "Paris Rome Lyon Birth City. unknown"], vocab_size=300)


@pytest.fixture
def kb(tmp_path):
    kb = SqliteKB(tmp_path / "kb.sqlite", encoder=HashingEncoder(), create=True)
    kb.import_triplets([("Ada Ashby", "Home City", "Lyon"), ("Bram Oakley", "Home City", "Rome")])
    yield kb
    kb.close()


def engine(tokenizer, kb):
    return LookupEngine(ScriptedLM(tokenizer, LMLMScript(tokenizer, STORIES)), tokenizer, kb)


def only_lookup(result):
    assert len(result.lookups) == 1, result.raw
    return result.lookups[0]


def test_relation_is_held_to_the_entitys_relations(tokenizer, kb):
    lm = engine(tokenizer, kb)
    free = only_lookup(lm.generate(["Ada Ashby lives in"], GenerationConfig(**FREE))[0])
    assert free.relation == "Residence"  # the model's own relation, which the KB does not hold
    held = only_lookup(lm.generate(["Ada Ashby lives in"], GenerationConfig(**LOOSE, constrain_lookups="relation"))[0])
    assert (held.relation, held.value, held.tier) == ("Home City", "Lyon", "exact")


def test_entity_relation_holds_the_entity_to_the_kbs_names(tokenizer, kb):
    lm = engine(tokenizer, kb)
    relation_only = only_lookup(lm.generate(["Ada Ashbe moved to"], GenerationConfig(**LOOSE, constrain_lookups="relation"))[0])
    assert relation_only.entity == "Ada Ashbe"
    held = only_lookup(lm.generate(["Ada Ashbe moved to"], GenerationConfig(**LOOSE, constrain_lookups="entity_relation"))[0])
    assert (held.entity, held.relation, held.value) == ("Ada Ashby", "Home City", "Lyon")


def test_a_call_the_model_did_not_mean_ends_as_a_miss(tokenizer, kb):
    # the scripted model puts 20 nats between its own token and any other: past the default margin of 5
    result = engine(tokenizer, kb).generate(["Ada Ashby lives in"], GenerationConfig(**FREE, constrain_lookups="relation"))[0]
    lookup = only_lookup(result)
    assert (lookup.relation, lookup.value, lookup.tier, lookup.triplet_id) == ("Residence", "unknown", "none", None)
    abstained = engine(tokenizer, kb).generate(["Ada Ashby lives in"], GenerationConfig(**dict(FREE, fallback="abstain"),
                                                                                        constrain_lookups="relation"))[0]
    assert only_lookup(abstained).value == ""
    assert abstained.token_ids[-1] == lm_end(tokenizer)  # the row closed its call and stopped


def lm_end(tokenizer):
    return tokenizer.convert_tokens_to_ids("<|db_end|>")


def test_an_edit_to_the_entity_is_seen_by_the_next_constraint(tokenizer, kb):
    lm = engine(tokenizer, kb)
    cfg = GenerationConfig(**LOOSE, constrain_lookups="relation")
    assert only_lookup(lm.generate(["Ada Ashby lives in"], cfg)[0]).relation == "Home City"
    kb.add("Ada Ashby", "Residence", "Paris")
    after = only_lookup(lm.generate(["Ada Ashby lives in"], cfg)[0])
    assert (after.relation, after.value) == ("Residence", "Paris")


def test_a_new_entity_is_seen_by_the_next_entity_constraint(tokenizer, kb):
    lm = engine(tokenizer, kb)
    cfg = GenerationConfig(**LOOSE, constrain_lookups="entity_relation")
    assert only_lookup(lm.generate(["Ada Ashbe moved to"], cfg)[0]).entity == "Ada Ashby"
    kb.add("Ada Ashbe", "Home City", "Paris")
    after = only_lookup(lm.generate(["Ada Ashbe moved to"], cfg)[0])
    assert (after.entity, after.value) == ("Ada Ashbe", "Paris")


def test_a_call_about_a_forgotten_entity_is_not_moved_onto_a_neighbours_name(tokenizer, kb):
    # the forget audit's leak: "Astrid Elmford" forgotten, her call was held to "Astrid Elmgate" and answered with his
    kb.add("Ada Ashbe", "Home City", "Paris")
    kb.forget("Ada Ashbe", exact=True)
    cfg = GenerationConfig(**LOOSE, constrain_lookups="entity_relation")
    lookup = only_lookup(engine(tokenizer, kb).generate(["Ada Ashbe moved to"], cfg)[0])
    assert (lookup.entity, lookup.value, lookup.tier, lookup.triplet_id) == ("Ada Ashbe", "unknown", "none", None)
    kb.add("Ada Ashbe", "Home City", "Rome")  # adding a fact brings the entity back
    assert only_lookup(engine(tokenizer, kb).generate(["Ada Ashbe moved to"], cfg)[0]).value == "Rome"


def test_an_edit_spells_only_the_names_the_kb_gained(tokenizer, kb, monkeypatch):
    constraints = engine(tokenizer, kb).constraints
    trie = constraints.entity_trie()
    spelled = []
    monkeypatch.setattr(constraints, "tokenizer", lambda names, **kw: spelled.extend(names) or tokenizer(names, **kw))
    kb.add("Ada Ashby", "Residence", "Paris")  # no new name
    kb.forget("Bram Oakley", exact=True)  # a forgotten entity keeps its name
    assert constraints.entity_trie() is trie and spelled == []
    kb.add("Ada Ashbe", "Home City", "Paris")
    assert constraints.entity_trie() is trie and spelled == [" Ada Ashbe"]
    names = {tokenizer.decode(path) for path in _paths(trie)}
    assert names == {" Ada Ashby", " Bram Oakley", " Ada Ashbe"}


def _paths(node, prefix=()):
    for token, child in node.items():
        if token == END:
            yield list(prefix)
        else:
            yield from _paths(child, (*prefix, token))


@pytest.mark.parametrize("drafts", [False, True])
def test_each_row_of_a_batch_has_its_own_constraint(tokenizer, kb, drafts):
    cfg = GenerationConfig(**dict(LOOSE, ngram_drafts=drafts, draft_values=drafts), constrain_lookups="entity_relation")
    prompts = ["Ada Ashby lives in", "Ada Ashbe moved to", "Bram Oakley lives in"]
    batch = engine(tokenizer, kb).generate(prompts, cfg)
    alone = [engine(tokenizer, kb).generate([p], cfg)[0] for p in prompts]
    assert [r.token_ids for r in batch] == [r.token_ids for r in alone]
    assert [(p.entity, p.relation, p.value) for r in batch for p in r.lookups] == [
        ("Ada Ashby", "Home City", "Lyon"), ("Ada Ashby", "Home City", "Lyon"), ("Bram Oakley", "Home City", "Rome")]


def test_constraints_off_change_nothing(tokenizer, kb):
    prompts = ["Ada Ashby lives in", "Ada Ashbe moved to", "Bram Oakley lives in"]
    plain = engine(tokenizer, kb).generate(prompts, GenerationConfig(max_new_tokens=40))
    off = engine(tokenizer, kb).generate(prompts, GenerationConfig(max_new_tokens=40, constrain_lookups="off", constrain_margin=0.0))
    assert [r.token_ids for r in off] == [r.token_ids for r in plain]
    assert only_lookup(off[0]).relation == "Residence"


def test_call_accuracy_scores_the_models_own_calls_against_each_documents_gold_facts(tokenizer, kb):
    from lmlm.engine import LMLM
    from lmlm.evaluate.suites import call_accuracy

    lmlm = LMLM(ScriptedLM(tokenizer, LMLMScript(tokenizer, STORIES)), tokenizer, kb)
    docs = [{"annotated_text": "Ada Ashby lives in <|db_entity|> Ada Ashby<|db_relationship|> Home City<|db_return|> Lyon<|db_end|> Lyon."},
            {"annotated_text": "Bram Oakley lives in <|db_entity|> Bram Oakley<|db_relationship|> Home City<|db_return|> Rome<|db_end|> Rome."}]
    off = call_accuracy(lmlm, docs, "off")
    assert [r["written"][1] for r in off["records"]] == ["Residence", "Home City"]  # the gold KB's resolver decides Ada's
    held = call_accuracy(lmlm, docs, "relation", margin=1000.0)
    assert held["metrics"] == {"call_accuracy": 1.0, "call_hit_rate": 1.0, "chance": 1.0, "calls": 2, "documents": 2}
    assert [r["written"] for r in held["records"]] == [["Ada Ashby", "Home City", "Lyon"], ["Bram Oakley", "Home City", "Rome"]]
    missed = call_accuracy(lmlm, docs[:1], "relation")  # the default margin: the model did not mean "Home City"
    assert missed["metrics"] == {"call_accuracy": 0.0, "call_hit_rate": 0.0, "chance": 1.0, "calls": 1, "documents": 1}


def test_a_calls_value_agrees_with_the_gold_one_when_equal_once_folded_or_contained_as_whole_words():
    from lmlm.evaluate.suites import values_agree

    assert values_agree("in 1961", "1961") and values_agree("1961", "in 1961")
    assert values_agree("Yokohama.", "yokohama") and values_agree("Łódź", "Lodz") and values_agree("39,900", "39900")
    assert not values_agree("1", "1961") and not values_agree("Paris", "Lyon") and not values_agree("", "Lyon")
    # a number's digit groups are one word; a stopword alone says nothing
    assert not values_agree("5", "5,000") and not values_agree("1.5", "5") and not values_agree("the", "the Beatles")
    # a value that normalizing empties agrees only with the same text
    assert values_agree("—", "—") and not values_agree("—", "?") and not values_agree("", "")


PRIOR_STORIES = ["The date of birth of Ada Ashby is <|db_entity|> Ada Ashby<|db_relationship|> Home City<|db_return|>",
                 "Ada Ashby lives in <|db_entity|> Ada Ashby<|db_relationship|> Home City<|db_return|>"]


@pytest.fixture
def scripted_engine(tmp_path):
    """Makes engines whose scripted model writes the calls of its stories, with a tokenizer that also knows
    ``words`` and a KB of ``triplets`` (closed at the end of the test)."""
    kbs = []

    def make(stories: list[str], words: str, triplets: list[tuple[str, str, str]]) -> LookupEngine:
        tokenizer = train_tokenizer([*stories, words], vocab_size=300)
        kbs.append(SqliteKB(tmp_path / f"scripted-{len(kbs)}.sqlite", encoder=HashingEncoder(), create=True))
        kbs[-1].import_triplets(triplets)
        return LookupEngine(ScriptedLM(tokenizer, LMLMScript(tokenizer, stories)), tokenizer, kbs[-1])

    yield make
    for kb in kbs:
        kb.close()


@pytest.fixture
def prior_lm(scripted_engine):
    """The scripted model always asks for Home City; the KB also holds Ada's Birth Date."""
    return scripted_engine(PRIOR_STORIES, "Birth Date. Lyon 1 May 1990 unknown",
                           [("Ada Ashby", "Home City", "Lyon"), ("Ada Ashby", "Birth Date", "1 May 1990")])


def test_the_relation_prior_tips_a_call_toward_the_relation_its_sentence_names(prior_lm):
    # the scripted model puts 20 nats on its own relation; the prior's weight times the similarity gap must pass that
    def relation(prompt, prior):
        cfg = GenerationConfig(**LOOSE, constrain_lookups="relation", relation_prior=prior)
        return only_lookup(prior_lm.generate([prompt], cfg)[0])

    assert relation("The date of birth of Ada Ashby is", 0.0).relation == "Home City"
    tipped = relation("The date of birth of Ada Ashby is", 100.0)
    assert (tipped.relation, tipped.value) == ("Birth Date", "1 May 1990")
    # a sentence that names no relation leaves the model's choice alone, whatever an earlier sentence said
    assert relation("Her date of birth is unknown. Ada Ashby lives in", 100.0).relation == "Home City"


def test_the_margin_does_not_end_a_call_the_prior_moves_between_held_relations(scripted_engine):
    # the scripted model's 20 nats for one held relation over another are no sign of a fact the KB lacks: at the
    # default margin the prior's choice stands, and the call is answered (its second story has it go on with "Date"
    # once "Birth" is written)
    birth_date = "Bram Oakley was born on <|db_entity|> Bram Oakley<|db_relationship|> Birth Date<|db_return|>"
    lm = scripted_engine([*PRIOR_STORIES, birth_date], "Birth Date. Lyon 1 May 1990 unknown",
                         [("Ada Ashby", "Home City", "Lyon"), ("Ada Ashby", "Birth Date", "1 May 1990")])
    cfg = GenerationConfig(**FREE, constrain_lookups="relation", relation_prior=100.0)
    tipped = only_lookup(lm.generate(["The date of birth of Ada Ashby is"], cfg)[0])
    assert (tipped.relation, tipped.value, tipped.tier) == ("Birth Date", "1 May 1990", "exact")


def test_call_accuracy_scores_the_calls_under_the_priors_it_is_given(prior_lm):
    from lmlm.engine import LMLM
    from lmlm.evaluate.suites import call_accuracy

    lmlm = LMLM(prior_lm.model, prior_lm.tokenizer, prior_lm.kb)
    doc = {"annotated_text": "Ada Ashby lives in <|db_entity|> Ada Ashby<|db_relationship|> Home City<|db_return|> Lyon<|db_end|> Lyon. "
                             "The date of birth of Ada Ashby is <|db_entity|> Ada Ashby<|db_relationship|> Birth Date<|db_return|> "
                             "1 May 1990<|db_end|> 1 May 1990."}
    plain = call_accuracy(lmlm, [doc], "relation")
    assert [r["written"][1] for r in plain["records"]] == ["Home City", "Home City"]
    # no margin: the scripted model knows no "Birth Date" to go on with once the prior has it write "Birth"
    tipped = call_accuracy(lmlm, [doc], "relation", margin=1000.0, relation_prior=100.0)
    assert [r["written"][1] for r in tipped["records"]] == ["Home City", "Birth Date"]
    # chance: each call's value is held by one of the document's two (entity, relation) pairs
    assert tipped["metrics"] == {"call_accuracy": 1.0, "call_hit_rate": 1.0, "chance": 0.5, "calls": 2, "documents": 1}


def test_the_relation_prior_needs_a_constraint_to_act_on(prior_lm):
    cfg = GenerationConfig(**LOOSE, constrain_lookups="off", relation_prior=100.0)
    assert only_lookup(prior_lm.generate(["The date of birth of Ada Ashby is"], cfg)[0]).relation == "Home City"


MENTION_STORIES = ["Wren Mossfield works as a <|db_entity|> Amara Mossworth<|db_relationship|> Occupation<|db_return|>",
                   "Later, Wren Mossfield met Amara Mossworth, who works as a <|db_entity|> Amara Mossworth<|db_relationship|> Occupation<|db_return|>"]


@pytest.fixture
def mention_lm(scripted_engine):
    """The scripted model miscopies Wren's name as another person's; the KB holds both people."""
    return scripted_engine(MENTION_STORIES, "surveyor chemist unknown",
                           [("Wren Mossfield", "Occupation", "surveyor"), ("Amara Mossworth", "Occupation", "chemist")])


def test_the_mention_prior_pulls_a_calls_entity_toward_a_name_the_text_holds(mention_lm):
    def lookup(prompt, prior, mode="entity_relation"):
        cfg = GenerationConfig(**LOOSE, constrain_lookups=mode, mention_prior=prior)
        return only_lookup(mention_lm.generate([prompt], cfg)[0])

    assert lookup("Wren Mossfield works as a", 0.0).entity == "Amara Mossworth"
    # the name opens the prompt, with no space before it: it is still found
    pulled = lookup("Wren Mossfield works as a", 100.0)
    assert (pulled.entity, pulled.value) == ("Wren Mossfield", "surveyor")
    # with two names in the text the prior favours both, and the model's own choice between them stands
    assert lookup("Later, Wren Mossfield met Amara Mossworth, who works as a", 100.0).entity == "Amara Mossworth"
    # it acts only where the entity is constrained
    assert lookup("Wren Mossfield works as a", 100.0, mode="relation").entity == "Amara Mossworth"


def test_a_name_the_text_holds_is_not_given_up_for_the_models_miscopy_of_it(scripted_engine):
    # the scripted model puts 20 nats on a miscopy the KB lacks, past the default margin: counted on its scores alone,
    # the call would end as a miss; the mention prior's bonus is counted in the cost too, so the named person is asked about
    miscopying = scripted_engine(["Wren Mossfield works as a <|db_entity|> Wren Mossard<|db_relationship|> Occupation<|db_return|>"],
                                 "surveyor chemist unknown", [("Wren Mossfield", "Occupation", "surveyor")])
    cfg = GenerationConfig(**FREE, constrain_lookups="entity_relation", mention_prior=100.0)
    held = only_lookup(miscopying.generate(["Wren Mossfield works as a"], cfg)[0])
    assert (held.entity, held.value, held.tier) == ("Wren Mossfield", "surveyor", "exact")
    for too_weak in (0.0, 10.0):  # evidence short of the 20 nats by more than the margin: the model's own call, a miss
        missed = only_lookup(miscopying.generate(["Wren Mossfield works as a"], replace(cfg, mention_prior=too_weak))[0])
        assert (missed.entity, missed.tier) == ("Wren Mossard", "none")


def test_the_relation_prior_does_not_force_a_relation_the_model_did_not_mean(scripted_engine):
    # the model means a relation the KB lacks, by 20 nats; the sentence names the one it has. The prior's bonus goes to
    # every relation the entity holds, so it must not count in the call's cost: the call ends as a miss
    story = "The home city of Ada Ashby is <|db_entity|> Ada Ashby<|db_relationship|> Residence<|db_return|>"
    lm = scripted_engine([story], "Home City. Lyon unknown", [("Ada Ashby", "Home City", "Lyon")])
    cfg = GenerationConfig(**FREE, constrain_lookups="relation", relation_prior=100.0)
    missed = only_lookup(lm.generate(["The home city of Ada Ashby is"], cfg)[0])
    assert (missed.relation, missed.tier) == ("Residence", "none")
    held = only_lookup(lm.generate(["The home city of Ada Ashby is"], replace(cfg, constrain_margin=1000.0))[0])
    assert (held.relation, held.value) == ("Home City", "Lyon")


def test_steps_the_model_agrees_with_give_no_credit_against_a_later_one(scripted_engine):
    # "Home Town", which Ada lacks, shares "Home" with the "Home City" she holds: the shared steps cost nothing (they
    # must not count as negative cost), and the 20 nats of "Town" over "City" still end the call as a miss
    story = "The home town of Ada Ashby is <|db_entity|> Ada Ashby<|db_relationship|> Home Town<|db_return|>"
    lm = scripted_engine([story], "Home City. Lyon unknown", [("Ada Ashby", "Home City", "Lyon")])
    missed = only_lookup(lm.generate(["The home town of Ada Ashby is"], GenerationConfig(**FREE, constrain_lookups="relation"))[0])
    assert (missed.relation, missed.tier) == ("Home Town", "none")


def test_in_one_batch_each_row_counts_only_its_own_evidence(scripted_engine):
    # the two cases above side by side: one row in its entity, the other in its relation at the same steps
    lm = scripted_engine(["Wren Mossfield works as a <|db_entity|> Wren Mossard<|db_relationship|> Occupation<|db_return|>",
                          "The home city of Ada Ashby is <|db_entity|> Ada Ashby<|db_relationship|> Residence<|db_return|>"],
                         "Home City. Lyon surveyor unknown", [("Wren Mossfield", "Occupation", "surveyor"), ("Ada Ashby", "Home City", "Lyon")])
    cfg = GenerationConfig(**FREE, constrain_lookups="entity_relation", relation_prior=100.0, mention_prior=100.0)
    held, missed = (only_lookup(r) for r in lm.generate(["Wren Mossfield works as a", "The home city of Ada Ashby is"], cfg))
    assert (held.entity, held.value, held.tier) == ("Wren Mossfield", "surveyor", "exact")
    assert (missed.relation, missed.tier) == ("Residence", "none")


def test_a_name_is_mentioned_only_where_its_last_word_ends(mention_lm):
    constraints = mention_lm.constraints
    trie = constraints.entity_trie()

    def mentioned(text):
        spelt = constraints._mentioned(mention_lm.tokenizer.encode(text, add_special_tokens=False), trie)
        return [mention_lm.tokenizer.decode(name).strip() for name in spelt]

    assert mentioned("Later, Wren Mossfield, who works as a") == ["Wren Mossfield"]
    assert mentioned("Wren Mossfield works as a") == ["Wren Mossfield"]
    assert mentioned("Later, Wren Mossfieldworth works as a") == []
    assert mentioned("Ask Amara about Wren Mossfield") == ["Wren Mossfield"]  # the text's last word ends where the text does
    # a chained call is about the value the call before it returned, which the text has not restated
    chained = "The boss of Wren Mossfield is <|db_entity|> Wren Mossfield<|db_relationship|> Boss<|db_return|> Amara Mossworth<|db_end|>"
    assert mentioned(chained) == ["Wren Mossfield", "Amara Mossworth"]


@pytest.mark.parametrize("decoder", ["byte_level", "metaspace"])
def test_a_word_goes_on_only_where_the_next_token_adds_no_space(decoder):
    """A SentencePiece decoder drops the leading space of a token decoded alone: the check must read what the
    token adds to the text before it, whatever the tokenizer."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    marker = "Ġ" if decoder == "byte_level" else "▁"
    vocab = {piece: i for i, piece in enumerate(["Ann", f"{marker}Ann", f"{marker}Lee", "ds", f"{marker}works", "."])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="Ann"))
    core.decoder = decoders.ByteLevel() if decoder == "byte_level" else decoders.Metaspace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core)
    ann, lee, ds, works, stop = (vocab[p] for p in (f"{marker}Ann", f"{marker}Lee", "ds", f"{marker}works", "."))
    assert not continues_word(tokenizer, [ann, lee, works])
    assert not continues_word(tokenizer, [ann, lee, stop])
    assert continues_word(tokenizer, [ann, lee, ds])
    assert not continues_word(tokenizer, [ann, lee])


def test_the_text_before_a_call_never_starts_inside_an_earlier_call(prior_lm):
    # a window cut after an earlier call's <|db_relationship|> would read that call's relation as plain text
    text = "Ada Ashby<|db_relationship|> Birth Date<|db_return|> 1 May 1990<|db_end|> 1 May 1990 and lives in"
    ids = prior_lm.tokenizer.encode(text, add_special_tokens=False)
    plain = prior_lm.constraints._plain_text(ids)
    assert "Birth Date" not in plain and plain.split() == "1 May 1990 and lives in".split(), plain


def chain_stories(lead: str) -> list[str]:
    """A one-hop and a two-hop sentence, each chaining a second call onto the employer, with ``lead`` between the
    first call's <|db_end|> and the second's <|db_entity|> (a lone space also stands there in training text)."""
    chain = (" <|db_entity|> Ada Ashby<|db_relationship|> works for<|db_return|> Foxglove Pharma<|db_end|>" + lead +
             "<|db_entity|> Foxglove Pharma<|db_relationship|> based in<|db_return|>")
    return ["Ada Ashby works for" + chain, "Ada Ashby's employer is based in" + chain]


class ChainingScript(LMLMScript):
    """Chains a second call onto the first call's value, as its stories do, wherever the sentence asked for;
    ``lead``: whether a lone space comes before the second call."""

    def __init__(self, tokenizer, stories, lead: bool):
        super().__init__(tokenizer, stories)
        self.lead = lead

    def __call__(self, context: list[int]) -> int:
        t = self.tokens
        if context.count(t.end) == 1 and context[-1] == t.end:
            return t.space if self.lead else t.entity
        if context.count(t.end) == 1 and self.lead and context[-2:] == [t.end, t.space]:
            return t.entity
        return super().__call__(context)


@pytest.fixture(params=["", " "], ids=["no lead", "lone space"])
def chaining_engine(request, tmp_path):
    stories = chain_stories(request.param)
    tokenizer = train_tokenizer([*stories, "Oakhollow. unknown"], vocab_size=300)
    script = ChainingScript(tokenizer, stories, lead=request.param == " ")
    assert script.tokens.space is not None
    kb = SqliteKB(tmp_path / "chain.sqlite", encoder=HashingEncoder(), create=True)
    kb.import_triplets([("Ada Ashby", "works for", "Foxglove Pharma"), ("Foxglove Pharma", "based in", "Oakhollow")])
    yield LookupEngine(ScriptedLM(tokenizer, script), tokenizer, kb)
    kb.close()


def test_the_chain_prior_keeps_a_one_hop_answer_from_chaining_and_leaves_a_two_hop_question_alone(chaining_engine):
    prompts = ["Ada Ashby works for", "Ada Ashby's employer is based in"]

    def relations(chain_prior, batch=True):
        cfg = GenerationConfig(**dict(LOOSE, max_new_tokens=64), constrain_lookups="relation", relation_prior=100.0, chain_prior=chain_prior)
        results = chaining_engine.generate(prompts, cfg) if batch else [chaining_engine.generate([p], cfg)[0] for p in prompts]
        return [[p.relation for p in result.lookups] for result in results]

    # the model chains on the employer wherever it is: the one-hop question gets the headquarters instead
    assert relations(chain_prior=False) == [["works for", "based in"]] * 2
    # "works for" reads as the relation just answered, not as one of the employer's: the chain is weighed down;
    # "'s employer is based in" reads as the employer's own relation: the chain stands; alone or in one batch
    expected = [["works for"], ["works for", "based in"]]
    assert relations(chain_prior=True) == expected
    assert relations(chain_prior=True, batch=False) == expected


def test_the_chain_bonus_is_w_times_the_values_best_relation_less_the_answered_one(chaining_engine):
    constraints, kb = chaining_engine.constraints, chaining_engine.kb
    kb.import_triplets([("Foxglove Pharma", "founded in", "1961")])
    cfg = GenerationConfig(relation_prior=10.0, chain_prior=True)
    answered = Provenance("Ada Ashby", "works for", "Foxglove Pharma", None, 1.0, "exact", (0, 0))
    row = RowState(prompt=[], lookups=[answered], relation_similarity={"works for": 0.2},
                   call_context=kb.encoder.encode(["based in"])[0])  # a unit vector: "based in" reads as itself, 1.0
    assert constraints.chain_bonus(row, cfg) == pytest.approx(10.0 * (1.0 - 0.2), abs=1e-5)
    row.lookups = [replace(answered, value="Oakhollow")]  # a value that holds no relations
    assert constraints.chain_bonus(row, cfg) == 0.0
    row.lookups, row.relation_similarity = [answered], {"Employer": 0.2}  # the call's relation had no similarity
    assert constraints.chain_bonus(row, cfg) == 0.0
