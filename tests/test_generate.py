"""The generation engine on tiny random models: equal to the naive reference loop and to HF generate,
batch-invariant, robust to malformed calls, and the reference-compatible API."""

import copy
import json
import warnings
from dataclasses import replace

import pytest
import torch
from tiny_lmlm import train_briefly
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from lmlm import markup
from lmlm.data import documents
from lmlm.draft import chosen_labels, distill
from lmlm.engine import (
    LMLM,
    GenerationConfig,
    LookupEngine,
    LookupTokens,
    choose,
    encode_text,
    query_of,
    reference_loop,
    sampling_generator,
    strip_calls,
)
from lmlm.engine.calls import answer_calls
from lmlm.errors import LmlmError, NotFound
from lmlm.kb import SqliteKB
from lmlm.models import TokenIds, build_model
from lmlm.ngrams import NgramTable
from lmlm.tokenizer import train_tokenizer
from lmlm.world import make_world

PROMPTS = [
    "Ada Ashby was born on",
    "Tell me a bio of Bram Oakley. Bram Oakley is",
    "The",
    "Beyoncé Giselle Knowles-Carter was born in <|db_entity|> Beyoncé Giselle Knowles-Carter<|db_relationship|> Birth",
    "Destiny's Child was managed by",
    "In 1990 she moved to the city of",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    make_world(root, people=60, seed=2, phrasing="plain")
    return root


@pytest.fixture(scope="module")
def tokenizer(world):
    texts = [markup.convert(json.loads(line)["annotated_text"], "special") for line in (world / "corpus.jsonl").read_text().splitlines()]
    return train_tokenizer(texts, vocab_size=600)


def _briefly_trained(model, tokenizer, world, steps=150):
    """A few seconds of training on the world, so the tiny model writes whole lookup calls."""
    from lmlm.data import build_dataset

    build_dataset([world / "corpus.jsonl"], tokenizer, "lmlm", world / f"ds-{model.config.model_type}", block_size=64)
    return train_briefly(model, world / f"ds-{model.config.model_type}", steps, lr=1e-2)


@pytest.fixture(scope="module")
def kb(shared, world, tmp_path_factory):
    from lmlm.kb.io import read_reference_db

    kb = SqliteKB(tmp_path_factory.mktemp("genkb") / "kb.sqlite", create=True)
    kb.import_triplets(read_reference_db(shared / "squad-eval100-Annotator_database.json"))
    kb.import_triplets(read_reference_db(world / "kb.json"))
    yield kb
    kb.close()


def _ids(tokenizer):
    return TokenIds(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def model(request, tokenizer, world):
    torch.manual_seed(0)
    if request.param == "llama":
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                             max_position_embeddings=512, tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id)
        model = LlamaForCausalLM(config)
    else:
        config = GPT2Config(vocab_size=len(tokenizer), n_embd=64, n_layer=2, n_head=4, n_positions=512, resid_pdrop=0, embd_pdrop=0,
                            attn_pdrop=0, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id)
        model = GPT2LMHeadModel(config)
    return _briefly_trained(model, tokenizer, world)


def test_engine_equals_the_naive_reference_loop(model, tokenizer, kb):
    cfg = GenerationConfig(max_new_tokens=40)
    results = LookupEngine(model, tokenizer, kb).generate(PROMPTS, cfg)
    asked = 0
    for prompt, result in zip(PROMPTS, results):
        assert result.token_ids == reference_loop(model, tokenizer, kb, prompt, cfg), prompt
        asked += len(result.lookups)
    assert asked >= 3  # the calls went through the KB and into the cache


def test_the_weight_layout_changes_the_speed_not_the_model(model, tokenizer, kb, tmp_path):
    loaded = copy.deepcopy(model)
    for parameter in loaded.parameters():
        parameter.data = parameter.data.contiguous()  # as transformers loads it (an engine may have re-laid the fixture)
    relaid = copy.deepcopy(loaded)
    engine = LookupEngine(relaid, tokenizer, kb)
    linears = [m.weight for m in relaid.modules() if isinstance(m, torch.nn.Linear) and m.weight is not relaid.get_input_embeddings().weight]
    assert all(not w.is_contiguous() for w in linears) and (linears or model.config.model_type == "gpt2")  # GPT-2's Conv1D is [in, out]
    assert relaid.get_output_embeddings().weight is relaid.get_input_embeddings().weight  # still tied
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), relaid.state_dict().values()))
    cfg = GenerationConfig(max_new_tokens=40)
    for prompt, result in zip(PROMPTS, engine.generate(PROMPTS, cfg)):
        assert result.token_ids == reference_loop(loaded, tokenizer, kb, prompt, cfg), prompt
    relaid.save_pretrained(tmp_path)
    saved = AutoModelForCausalLM.from_pretrained(tmp_path).state_dict()
    assert saved.keys() == loaded.state_dict().keys() and all(torch.equal(saved[k], v) for k, v in loaded.state_dict().items())


def test_the_engine_and_the_dynamic_perplexity_pass_the_cache_by_its_current_name(model, tokenizer, kb, world):
    """transformers renamed the forward's ``past_key_values`` to ``cache`` and warns on the old name where it has."""
    from lmlm.evaluate.suites import _dynamic_perplexity

    doc = json.loads((world / "corpus.jsonl").read_text().splitlines()[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        assert LookupEngine(model, tokenizer, kb).generate(PROMPTS[:2], GenerationConfig(max_new_tokens=8))[0].token_ids
        assert _dynamic_perplexity(LMLM(model, tokenizer, kb), [doc]) > 1


def test_lookups_off_equals_hf_generate(model, tokenizer, kb):
    tokens = LookupTokens(tokenizer)
    cfg = GenerationConfig(max_new_tokens=24, use_lookups=False, repetition_penalty=1.0, entity_bias=0.0, lookup_bias=0.0)
    results = LookupEngine(model, tokenizer, None).generate(PROMPTS, cfg)
    for prompt, result in zip(PROMPTS, results):
        ids = torch.tensor([tokenizer.encode(prompt)])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False, suppress_tokens=[tokens.entity],
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        expected = out[0, ids.shape[1]:].tolist()
        assert result.token_ids == expected
        assert tokens.entity not in result.token_ids


def test_batch_of_16_equals_one_at_a_time(model, tokenizer, kb):
    prompts = (PROMPTS * 3)[:16]
    prompts = [p + " x" * i for i, p in enumerate(prompts)]
    engine = LookupEngine(model, tokenizer, kb)
    cfg = GenerationConfig(max_new_tokens=30)
    batched = engine.generate(prompts, cfg)
    for prompt, result in zip(prompts, batched):
        single = engine.generate([prompt], cfg)[0]
        assert (single.token_ids, single.text, single.raw) == (result.token_ids, result.text, result.raw)
        assert [p.to_dict() for p in single.lookups] == [p.to_dict() for p in result.lookups]


def test_value_drafts_change_the_speed_not_the_tokens(model, tokenizer, kb):
    """After a lookup the engine drafts the value's repeat in the forward that forces the value; taken or
    masked out, the tokens are those of decoding without drafts, in a batch and one at a time."""
    engine, cfg = LookupEngine(model, tokenizer, kb), GenerationConfig(max_new_tokens=40)
    prompts = (PROMPTS * 3)[:16]
    plain = [r.token_ids for r in engine.generate(prompts, replace(cfg, draft_values=False, ngram_drafts=False))]
    assert engine.draft_stats == {"drafted": 0, "rejected": 0, "calls": 0}
    values_only = replace(cfg, ngram_drafts=False)
    assert [r.token_ids for r in engine.generate(prompts, values_only)] == plain
    assert [engine.generate([p], values_only)[0].token_ids for p in prompts] == plain
    drafted, rejected = engine.draft_stats["drafted"], engine.draft_stats["rejected"]
    assert rejected > 0  # the masking path ran
    if model.config.model_type == "llama":  # the briefly trained GPT-2 does not repeat values yet
        assert drafted > rejected  # and drafts were taken


def _openings(world, words=(5, 9)) -> list[str]:
    """The first words of the world's documents: prompts like those the models were trained on."""
    return [" ".join(doc.split()[:n]) for doc in documents([world / "corpus.jsonl"], "standard") for n in words]


@pytest.fixture(scope="module")
def drafts(model, tokenizer, kb, world):
    """A 1-layer draft model, (untrained, distilled on the model's output for openings of the world's documents
    but the last 10)."""
    torch.manual_seed(1)
    fresh = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                                         intermediate_size=128, max_position_embeddings=512, tie_word_embeddings=True,
                                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id))
    untrained = copy.deepcopy(fresh).eval()
    return untrained, distill(model, fresh, tokenizer, kb, _openings(world)[:-20], steps=200, batch_size=16, lr=1e-2, new_tokens=40)


@pytest.mark.slow
def test_draft_model_changes_the_speed_not_the_tokens(model, tokenizer, kb, drafts, world):
    """A draft model's proposals are verified in the model's next forward: taken or masked out, the tokens
    are those of decoding without one, one prompt at a time and in a batch; distilled on the model's output,
    the draft has far more of its tokens taken on prompts it was not distilled on."""
    cfg = GenerationConfig(max_new_tokens=40)
    plain_engine = LookupEngine(model, tokenizer, kb)
    taken = {}
    for name, draft in zip(("untrained", "distilled"), drafts):
        engine = LookupEngine(model, tokenizer, kb, draft_model=draft)
        for prompts in (PROMPTS, _openings(world)[-20:]):
            plain = [r.token_ids for r in plain_engine.generate(prompts, cfg)]
            assert [r.token_ids for r in engine.generate(prompts[:8], cfg)] == plain[:8]
            engine.draft_stats = dict.fromkeys(engine.draft_stats, 0)
            assert [engine.generate([p], cfg)[0].token_ids for p in prompts] == plain
        assert engine.draft_stats["rejected"] > 0  # the masking path ran, in both caches
        taken[name] = 1 - engine.draft_stats["rejected"] / engine.draft_stats["drafted"]  # of the held-out openings
    assert taken["distilled"] > taken["untrained"] + 0.3, taken  # about 0.03 -> 0.45 for the 2-layer Llama
    sampled = GenerationConfig(max_new_tokens=20, do_sample=True, temperature=0.8, seed=3)  # the draft sits out: same draws
    assert [r.token_ids for r in engine.generate(PROMPTS, sampled)] == [r.token_ids for r in LookupEngine(model, tokenizer, kb).generate(PROMPTS, sampled)]


def test_draft_model_acceptance_in_a_batch_equals_one_row_runs(model, tokenizer, kb, drafts, world):
    """In a batch of 2 to 8 rows the draft model proposes for every row at once; a row whose proposal ended
    early (at a call's <|db_return|>) gets placeholders while the others go on, and they must leave the
    draft's cache even when the model takes the drafted call and its answer: the draft then proposes for
    each row what it proposes one row at a time, and as many tokens are taken."""
    engine, cfg = LookupEngine(model, tokenizer, kb, draft_model=drafts[1]), GenerationConfig(max_new_tokens=40)
    prompts = _openings(world)[-16:]
    for batch in (prompts[:8], prompts[8:11]):
        engine.draft_stats = dict.fromkeys(engine.draft_stats, 0)
        batched = [r.token_ids for r in engine.generate(batch, cfg)]
        in_batch = engine.draft_stats
        engine.draft_stats = dict.fromkeys(engine.draft_stats, 0)
        assert [engine.generate([p], cfg)[0].token_ids for p in batch] == batched
        assert in_batch == engine.draft_stats
        assert in_batch["drafted"] > in_batch["rejected"]  # proposals were taken


@pytest.fixture(scope="module")
def ngrams(tokenizer, world):
    return NgramTable.from_texts(documents([world / "corpus.jsonl"], "lmlm"), tokenizer)


@pytest.mark.parametrize("margin", [5.0, 0.0])
def test_drafts_under_constraints_and_priors_change_the_speed_not_the_tokens(model, tokenizer, kb, ngrams, world, margin):
    """Under the entity and relation constraint with both priors, drafts with calls and their answers in them are
    verified under the mask: the tokens and lookups are those of decoding without drafts. At margin 0 a token the mask
    changes makes its call a miss unless the mention prior's bonus makes up for it, which a drafted answer must not
    overrule."""
    cfg = GenerationConfig(max_new_tokens=40, constrain_lookups="entity_relation", constrain_margin=margin, relation_prior=20.0,
                           mention_prior=5.0)
    prompts, engine = _openings(world)[-12:], LookupEngine(model, tokenizer, kb, ngrams=ngrams)

    def run(cfg):
        return [(r.token_ids, [p.to_dict() for p in r.lookups]) for p in prompts for r in engine.generate([p], cfg)]

    expected = run(replace(cfg, ngram_drafts=False, draft_values=False))
    engine.draft_stats = dict.fromkeys(engine.draft_stats, 0)
    assert run(cfg) == expected
    stats = engine.draft_stats  # drafted calls were taken with their answers (at margin 0 most calls miss: drafts at least)
    assert (stats["calls"] if margin else stats["drafted"] - stats["rejected"]) > 0


@pytest.mark.slow
def test_ngram_drafts_change_the_speed_not_the_tokens(model, tokenizer, kb, ngrams, world):
    """Drafts from a row's own text and from the training text's n-gram table, calls with their answers
    among them: taken or masked out, the tokens, lookups and streamed tokens are those of decoding without
    them, one prompt at a time and in a batch. The table's drafts save forwards on openings like those the
    model was trained on."""
    cfg, prompts = GenerationConfig(max_new_tokens=40), _openings(world)[-20:]
    plain = LookupEngine(model, tokenizer, kb)

    def run(engine, prompts, cfg):  # what a caller sees: tokens, lookups, and the stream
        streamed = []
        results = engine.generate(prompts, cfg, on_token=lambda *token: streamed.append(token))
        return [(r.token_ids, [p.to_dict() for p in r.lookups]) for r in results], streamed

    expected = [run(plain, [p], replace(cfg, ngram_drafts=False)) for p in prompts]
    assert [run(plain, [p], cfg) for p in prompts] == expected  # own text only
    forwards = []
    hook = model.register_forward_pre_hook(lambda *_: forwards.append(1))
    engine = LookupEngine(model, tokenizer, kb, ngrams=ngrams)
    assert [run(engine, [p], cfg) for p in prompts] == expected
    with_table = len(forwards)
    expected = [e[0][0][0] for e in expected]
    assert [plain.generate([p], replace(cfg, ngram_drafts=False))[0].token_ids for p in prompts] == expected
    hook.remove()
    assert engine.draft_stats["rejected"] > 0  # the masking path ran
    if model.config.model_type == "llama":  # the briefly trained GPT-2 rarely writes a whole call
        assert engine.draft_stats["calls"] > 0  # drafted calls were taken with their answers
    assert with_table < 0.8 * (len(forwards) - with_table), (with_table, len(forwards) - with_table)
    assert [r.token_ids for r in engine.generate(prompts[:8], cfg)] == expected[:8]
    sampled = GenerationConfig(max_new_tokens=20, do_sample=True, temperature=0.8, seed=3)  # drafts sit out: same draws
    assert [r.token_ids for r in engine.generate(PROMPTS, sampled)] == [r.token_ids for r in plain.generate(PROMPTS, sampled)]


def test_the_prompt_forward_verifies_the_first_draft(model, tokenizer, kb, ngrams, world):
    """The first draft rides in the prompt's forward, so it costs no forward of its own."""
    prompt = _openings(world)[-1]
    ids = tokenizer.encode(prompt)
    assert ngrams.propose(ids, 4)  # the table knows what follows an opening
    widths = []
    hook = model.register_forward_pre_hook(lambda module, args, kwargs: widths.append(kwargs["input_ids"].shape[1]), with_kwargs=True)
    result = LookupEngine(model, tokenizer, kb, ngrams=ngrams).generate([prompt], GenerationConfig(max_new_tokens=12))[0]
    hook.remove()
    assert widths[0] > len(ids)
    assert result.token_ids == LookupEngine(model, tokenizer, kb).generate([prompt], GenerationConfig(max_new_tokens=12, ngram_drafts=False))[0].token_ids


def test_drafted_calls_are_answered_once_the_model_wrote_the_entity(model, tokenizer, kb):
    """A drafted call is looked up at once only when its entity is the model's own text; a call whose
    entity is drafted too loses its <|db_return|> and waits for the model's own."""
    engine, cfg = LookupEngine(model, tokenizer, kb), GenerationConfig(max_new_tokens=40)
    t = engine.tokens
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    prompt, name, relation = encode("She was born in"), encode(" Ada Ashby"), encode(" Birth City")
    batch = engine.start_batch([prompt + [t.entity] + name, prompt], cfg)
    named, unnamed = batch.rows
    named.draft = [t.relationship, *relation, t.ret]
    unnamed.draft = [t.entity, *name, t.relationship, *relation, t.ret]
    engine.answer_drafted_calls(batch)
    assert named.draft_call is not None and named.draft_call[0] == len(relation) + 1
    assert named.draft[len(relation) + 2 :] == named.draft_call[1].forced + named.draft_call[1].repeat
    assert (named.draft_call[1].lookup.entity, named.draft_call[1].lookup.relation) == ("Ada Ashby", "Birth City")
    assert unnamed.draft_call is None and unnamed.draft == [t.entity, *name, t.relationship, *relation]


def test_ngram_table_needs_the_same_tokenizer(model, tokenizer, kb):
    with pytest.raises(LmlmError, match="built with another tokenizer"):
        LookupEngine(model, tokenizer, kb, ngrams=NgramTable.from_token_ids([[1, len(tokenizer) + 5]]))


def test_draft_model_needs_the_same_vocabulary(model, tokenizer, kb):
    other = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer) + 1, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=64))
    with pytest.raises(LmlmError, match="share the model's tokenizer"):
        LookupEngine(model, tokenizer, kb, draft_model=other)
    with pytest.raises(LmlmError, match="share the model's tokenizer"):
        distill(model, other, tokenizer, kb, ["The"])


def test_distill_labels_only_the_chosen_tokens(tokenizer):
    t = LookupTokens(tokenizer)
    born, ada, city, value, then = (tokenizer.encode(w, add_special_tokens=False) for w in (" born", " Ada", " City", " Paris", " then"))
    generated = [*born, t.entity, *ada, t.relationship, *city, t.ret, *value, t.end, *value, *then]
    chosen = [*born, t.entity, *ada, t.relationship, *city, t.ret] + [-100] * (len(value) + 1) + [*value, *then]
    assert chosen_labels(generated, t) == chosen


@pytest.mark.slow
def test_compiled_steps_give_the_same_tokens(model, tokenizer, kb, drafts, ngrams):
    """torch.compile of the steps after the prompt changes the speed, not the output, with n-gram drafts and
    with a draft model too."""
    eager = LookupEngine(model, tokenizer, kb)
    compiled = LookupEngine(model, tokenizer, kb, compile=True, ngrams=ngrams)
    drafting = LookupEngine(model, tokenizer, kb, compile=True, draft_model=drafts[1])
    cfg = GenerationConfig(max_new_tokens=30)
    for prompts in (PROMPTS[:1], (PROMPTS * 3)[:16], PROMPTS):
        expected = [r.token_ids for r in eager.generate(prompts, cfg)]
        assert [r.token_ids for r in compiled.generate(prompts, cfg)] == expected
        assert [r.token_ids for r in drafting.generate(prompts, cfg)] == expected


def test_provenance_spans_and_clean_text(model, tokenizer, kb):
    tokens = LookupTokens(tokenizer)
    results = LookupEngine(model, tokenizer, kb).generate(PROMPTS, GenerationConfig(max_new_tokens=40))
    # every call but one that max_new_tokens cut short (its span runs past the end) is whole in the tokens
    whole = [(i, r, p) for i, r in enumerate(results) for p in r.lookups if p.token_span[1] <= len(r.token_ids)]
    assert len(whole) >= 2
    for i, result, p in whole:
        start, end = p.token_span
        assert tokenizer.decode(result.token_ids[start:end]).endswith(f" {p.value}<|db_end|>")
    # a call with an entity starts at its <|db_entity|>, or at 0 when the prompt holds it (a call without one starts at its <|db_return|>)
    named = [(i, r, p) for i, r, p in whole if p.entity]
    assert named and all(r.token_ids[p.token_span[0]] == tokens.entity or (p.token_span[0] == 0 and PROMPTS[i].endswith("Birth"))
                         for i, r, p in named)
    assert all(markup.DB_ENTITY not in r.text and markup.DB_END not in r.text for r in results)


def test_calls_without_entity_or_relation_use_the_fallback(model, tokenizer, kb):
    engine, tokens = LookupEngine(model, tokenizer, kb), LookupTokens(tokenizer)
    planted = [tokenizer.encode(text, add_special_tokens=False) for text in
               ("x<|db_relationship|> Birth Date<|db_return|>", "x <|db_entity|> Ada<|db_return|>", "<|db_return|>")]
    for fallback, expected in (("unknown", " unknown"), ("top1_anyway", " unknown"), ("abstain", "")):
        for answer in answer_calls(planted, kb, tokenizer, tokens, GenerationConfig(fallback=fallback)):
            assert answer.forced[-1] == tokens.end and tokenizer.decode(answer.forced[:-1]) == expected
            assert answer.repeat == []  # a fallback's "unknown" is not drafted as the text that follows
            assert answer.abstains == (fallback == "abstain") and answer.lookup.tier == "none"
    # and through generate: biases that make the model write stray <|db_return|>s, calls without an entity
    for fallback, value in (("unknown", "unknown"), ("top1_anyway", "unknown"), ("abstain", "")):
        results = engine.generate(PROMPTS[:3], GenerationConfig(max_new_tokens=30, entity_bias=-50.0, lookup_bias=50.0, fallback=fallback))
        lookups = [p for r in results for p in r.lookups]
        assert lookups and all((p.entity, p.value, p.tier) == ("", value, "none") for p in lookups)
    asked = [r for r in results if r.lookups]  # the abstaining run's: an abstention closes the call and ends the row
    assert asked and all(len(r.lookups) == 1 and r.token_ids[-1] == tokens.end for r in asked)


def test_query_parsing_from_ids(tokenizer):
    tokens = LookupTokens(tokenizer)
    enc = lambda s: tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
    ids = enc("x <|db_entity|> Ada Ashby<|db_relationship|> Birth Date<|db_return|>")
    assert query_of(ids, tokens, tokenizer)[:2] == ("Ada Ashby", "Birth Date")
    assert query_of(enc("x<|db_relationship|> Birth Date<|db_return|>"), tokens, tokenizer)[:2] == ("", "")
    assert query_of(enc("x <|db_entity|> Ada<|db_return|>"), tokens, tokenizer)[:2] == ("", "")
    ids = enc("born on <|db_entity|> Ada<|db_relationship|> B<|db_return|> 1 May<|db_end|> 1 May.")
    assert tokenizer.decode(strip_calls(ids, tokens)) == "born on 1 May."


def test_sampling_is_seeded(model, tokenizer, kb):
    engine = LookupEngine(model, tokenizer, kb)
    cfg = GenerationConfig(max_new_tokens=20, do_sample=True, temperature=0.8, top_k=50, top_p=0.9, seed=3)
    sampled = [r.token_ids for r in engine.generate(PROMPTS[:3], cfg)]
    assert sampled == [r.token_ids for r in engine.generate(PROMPTS[:3], cfg)]
    assert sampled != [r.token_ids for r in engine.generate(PROMPTS[:3], replace(cfg, seed=4))]  # the seed is used
    assert sampled != [r.token_ids for r in engine.generate(PROMPTS[:3], replace(cfg, do_sample=False))]  # and so is do_sample


def test_streaming_sees_every_token(model, tokenizer, kb):
    seen = {}
    results = LookupEngine(model, tokenizer, kb).generate(PROMPTS[:4], GenerationConfig(max_new_tokens=25),
                                                          on_token=lambda row, tok, forced: seen.setdefault(row, []).append(tok))
    assert [seen[i] for i in range(4)] == [r.token_ids for r in results]


def test_streaming_rows_count_across_batches(model, tokenizer, kb):
    """``LMLM.generate`` runs a long list in batches of ``batch_size``; the streamed row numbers are the prompts' own."""
    seen = {}
    results = LMLM(model, tokenizer, kb).generate(PROMPTS[:5], batch_size=2, max_new_tokens=12,
                                                  on_token=lambda row, tok, forced: seen.setdefault(row, []).append(tok))
    assert sorted(seen) == [0, 1, 2, 3, 4]
    assert [seen[i] for i in range(5)] == [r.token_ids for r in results]


def test_the_sampling_generator_follows_the_device():
    """torch.multinomial on an accelerator needs a generator on that device; meta tensors sample with the CPU's."""
    cfg = GenerationConfig(do_sample=True, seed=3)
    assert sampling_generator(3, "cpu").initial_seed() == 3 and sampling_generator(3, "cpu").device.type == "cpu"
    drawn = choose(torch.zeros(2, 7, device="meta"), cfg, sampling_generator(3, torch.device("meta")))
    assert drawn.device.type == "meta" and drawn.shape == (2,)
    scores = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    assert torch.equal(choose(scores, cfg, sampling_generator(3, "cpu")), choose(scores, cfg, torch.Generator().manual_seed(3)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the request for a CUDA generator where CUDA is missing")
def test_the_sampling_generator_asks_for_one_on_cuda():
    with pytest.raises(RuntimeError, match="CUDA"):  # torch refuses a CUDA generator here: one was asked for
        sampling_generator(3, "cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sampling_on_cuda():
    cfg = GenerationConfig(do_sample=True, seed=3)
    assert choose(torch.zeros(2, 7, device="cuda"), cfg, sampling_generator(3, "cuda")).device.type == "cuda"


def test_max_new_tokens_that_fill_the_context_are_refused(model, tokenizer, kb):
    engine = LookupEngine(model, tokenizer, kb)
    assert engine.context == 512
    for truncate in (True, False):
        with pytest.raises(LmlmError, match="max_new_tokens 512 leaves no room for a prompt in the model's context of 512 tokens: ask for at most 511"):
            engine.generate(["Ada Ashby was born on"], GenerationConfig(max_new_tokens=512, truncate_prompt=truncate))
    with pytest.raises(LmlmError, match="max_new_tokens 600 leaves no room"):
        engine.generate(["word " * 600], GenerationConfig(max_new_tokens=600, truncate_prompt=True))


@pytest.fixture
def small_kb(tmp_path):
    kb = SqliteKB(tmp_path / "small.sqlite", create=True)
    kb.import_triplets([("Ada Ashby", "Birth City", "Paris"), ("Bram Oakley", "Birth City", "Ya<|db_end|>ko <|db_entity|> ma")])
    yield kb
    kb.close()


CALL = "{name} was born in <|db_entity|> {name}<|db_relationship|> Birth City<|db_return|>"


def test_a_prompt_that_ends_with_a_call_is_answered(model, tokenizer, small_kb):
    """The KB's value is forced first, as if the model had written the <|db_return|>: ``raw``, ``text``,
    the lookups and the stream agree, in a batch (of up to 8 rows, or more) and one row at a time, and the
    tokens are those of the reference loop."""
    engine, tokens, cfg = LookupEngine(model, tokenizer, small_kb), LookupTokens(tokenizer), GenerationConfig(max_new_tokens=16)
    prompt = CALL.format(name="Ada Ashby")
    streamed = []
    result = engine.generate([prompt], cfg, on_token=lambda row, token, forced: streamed.append((token, forced)))[0]
    forced = encode_text(tokenizer, " Paris") + [tokens.end]
    assert result.token_ids[: len(forced)] == forced and result.raw.startswith(" Paris<|db_end|>")
    assert [p.to_dict() for p in result.lookups][0] == {"entity": "Ada Ashby", "relation": "Birth City", "value": "Paris", "triplet_id": 1,
                                                        "score": 1.0, "tier": "exact", "token_span": [0, len(forced)]}
    assert result.text == tokenizer.decode(strip_calls(result.token_ids[len(forced) :], tokens), skip_special_tokens=True)
    assert streamed[: len(forced)] == [(t, True) for t in forced] and [t for t, _ in streamed] == result.token_ids
    assert result.token_ids == reference_loop(model, tokenizer, small_kb, prompt, cfg)
    for batch in ([prompt, *PROMPTS[:3]], [*PROMPTS, prompt, *PROMPTS]):  # wide steps, and one-token steps after the prompt's
        out = engine.generate(batch, cfg)
        assert out[batch.index(prompt)].token_ids == result.token_ids
    abstains = engine.generate([CALL.format(name="Nobody Known")], replace(cfg, fallback="abstain"))[0]
    assert abstains.token_ids == [tokens.end] and abstains.lookups[0].tier == "none" and abstains.text == ""


def test_kb_values_are_fed_as_text(model, tokenizer, small_kb):
    """A value that holds a special token's string is spelled in ordinary tokens: it cannot close the call early."""
    engine, tokens, cfg = LookupEngine(model, tokenizer, small_kb), LookupTokens(tokenizer), GenerationConfig(max_new_tokens=24)
    value = "Ya<|db_end|>ko <|db_entity|> ma"
    prompt = CALL.format(name="Bram Oakley")
    result = engine.generate([prompt], cfg)[0]
    value_ids = encode_text(tokenizer, " " + value)
    assert not set(value_ids) & {tokens.entity, tokens.relationship, tokens.ret, tokens.end}
    assert result.token_ids[: len(value_ids) + 1] == value_ids + [tokens.end]
    assert result.lookups[0].value == value and result.lookups[0].token_span == (0, len(value_ids) + 1)
    assert result.raw.startswith(f" {value}<|db_end|>")
    assert result.token_ids == reference_loop(model, tokenizer, small_kb, prompt, cfg)


def test_bad_input(model, tokenizer, kb, tmp_path):
    engine = LookupEngine(model, tokenizer, kb)
    assert engine.generate([]) == []
    with pytest.raises(LmlmError, match="prompt 0 has"):
        engine.generate(["word " * 600], GenerationConfig(max_new_tokens=8))
    assert len(engine.generate(["word " * 600], GenerationConfig(max_new_tokens=8, truncate_prompt=True))[0].token_ids) == 8
    with pytest.raises(LmlmError, match="no knowledge base"):
        LookupEngine(model, tokenizer, None).generate(["x"])
    # a checkpoint whose tokenizer lacks the lookup tokens
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer, backend.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    backend.train_from_iterator(["just some text without lookups"] * 20, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|end_of_text|>", "<|pad|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    plain = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|end_of_text|>", pad_token="<|pad|>")
    bare = build_model("tiny", TokenIds(len(plain), None, plain.eos_token_id, plain.pad_token_id))
    bare.save_pretrained(tmp_path / "bare")
    plain.save_pretrained(tmp_path / "bare")
    with pytest.raises(LmlmError, match="no single token for <\\|db_entity\\|>"):
        LMLM.from_pretrained(tmp_path / "bare")
    result = LMLM.from_pretrained(tmp_path / "bare", use_lookups=False).generate("just some", use_lookups=False, max_new_tokens=6,
                                                                                 repetition_penalty=1.0)
    ids = torch.tensor([plain.encode("just some")])
    hf = bare.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False, pad_token_id=plain.pad_token_id)
    assert result.token_ids == hf[0, ids.shape[1] :].tolist()  # no bias or ban on tokens it does not have


def test_reference_compatible_quick_start(model, tokenizer, shared, tmp_path):
    if model.config.model_type != "llama":
        pytest.skip("the reference's LlamaForLMLM is a Llama")
    model.save_pretrained(tmp_path / "ckpt")
    tokenizer.save_pretrained(tmp_path / "ckpt")
    # the reference's example_lmlm_inference.py, unchanged but for the import and the device
    from lmlm.compat import load_model_and_tokenizer

    model_args = {"use_special_tokens": True, "threshold": 0.6, "fallback_policy": "top1_anyway"}
    generation_args = {"max_new_tokens": 32, "max_lookup_limit": 10, "do_sample": False, "temperature": 0.0, "enable_dblookup": True}
    lmlm_model, tok = load_model_and_tokenizer(str(tmp_path / "ckpt"), str(shared / "squad-eval100-Annotator_database.json"), model_args, device="cpu")
    lmlm_model.eval()
    output_raw = lmlm_model.generate_with_lookup(prompt="Tell me a bio of Beyoncé. Beyoncé is", tokenizer=tok, **generation_args, enable_postprocess=False)
    output_text = lmlm_model.post_process(output_raw, tok)
    assert isinstance(output_raw, str) and markup.DB_ENTITY not in output_text
    assert lmlm_model.db_manager.retrieve_from_database("x <|db_entity|> Beyoncé Giselle Knowles-Carter<|db_relationship|> Birthplace<|db_return|>") == "Houston, Texas"


def test_generate_cli(model, tokenizer, kb, tmp_path):
    from conftest import run_cli

    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    proc = run_cli("generate", "--model", tmp_path / "m", "--kb", kb.path, "--json", "--max-new-tokens", "12", "Ada Ashby was born on", "The", check=True)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 2 and all(set(r) == {"text", "raw", "lookups", "kb_version"} for r in lines)
    (tmp_path / "p.jsonl").write_text('{"id": 1, "prompt": "Ada"}\n{"id": 2, "prompt": "The city"}\n')
    run_cli("generate", "--model", tmp_path / "m", "--kb", kb.path, "--input", tmp_path / "p.jsonl", "--output", tmp_path / "o.jsonl",
            "--max-new-tokens", "8", check=True)
    out = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [o["id"] for o in out] == [1, 2] and all("lookups" in o for o in out)


def test_ngrams_cli(model, tokenizer, kb, world, tmp_path):
    """``lmlm ngrams`` writes a table into the checkpoint, which ``lmlm generate`` drafts from, with the same output."""
    from conftest import run_cli

    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    generate = ["generate", "--model", tmp_path / "m", "--kb", kb.path, "--json", "--max-new-tokens", "16", "--batch-size", "1", *PROMPTS[:3]]
    without = run_cli(*generate, check=True).stdout
    proc = run_cli("ngrams", "--model", tmp_path / "m", "--corpus", world / "corpus.jsonl", check=True)
    assert "contexts to" in proc.stdout and (tmp_path / "m" / "ngram_drafts.json").is_file()
    assert LMLM.from_pretrained(tmp_path / "m", kb=kb).engine.ngrams is not None
    assert run_cli(*generate, check=True).stdout == without
    proc = run_cli("ngrams", "--model", tmp_path / "nothing", "--corpus", world / "corpus.jsonl")
    assert proc.returncode != 0 and "nothing: cannot load a tokenizer" in proc.stderr


def test_distill_cli(model, tokenizer, kb, tmp_path):
    """``lmlm distill`` makes a draft checkpoint that ``lmlm generate --draft-model`` uses, with the same output."""
    from conftest import run_cli

    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    draft = build_model("tiny", _ids(tokenizer), context=128)
    draft.save_pretrained(tmp_path / "d0")
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    args = ["distill", "--model", tmp_path / "m", "--draft", tmp_path / "d0", "--kb", kb.path, "--prompts", tmp_path / "p.jsonl",
            "--steps", "3", "--batch-size", "4", "--new-tokens", "8"]
    run_cli(*args, "--out", tmp_path / "d1", check=True)
    proc = run_cli(*args, "--out", tmp_path / "d1")
    assert proc.returncode != 0 and "d1: exists and is not empty" in proc.stderr
    generate = ["generate", "--model", tmp_path / "m", "--kb", kb.path, "--json", "--max-new-tokens", "16", "--batch-size", "1", *PROMPTS[:3]]
    assert run_cli(*generate, "--draft-model", tmp_path / "d1", check=True).stdout == run_cli(*generate, check=True).stdout


def test_constraints_off_equal_the_reference_loop_and_relation_holds_calls_to_the_kb(model, tokenizer, kb):
    engine = LookupEngine(model, tokenizer, kb)
    off = GenerationConfig(max_new_tokens=40, constrain_lookups="off")
    for prompt, result in zip(PROMPTS, engine.generate(PROMPTS, off)):
        assert result.token_ids == reference_loop(model, tokenizer, kb, prompt, off), prompt
    held = engine.generate(PROMPTS[:3], GenerationConfig(max_new_tokens=40, constrain_lookups="relation", constrain_margin=1000.0))
    known = [(p, _relations(kb, p.entity)) for r in held for p in r.lookups if _relations(kb, p.entity)]
    assert known  # an entity the KB does not know leaves its call unconstrained
    for p, relations in known:  # a written entity the KB knows gets one of its own relations, word for word
        assert p.relation in relations, p


def _relations(kb, entity: str) -> set[str]:
    try:
        return {t.relation for t in kb.facts(entity)}
    except NotFound:
        return set()


def test_generate_cli_json_gives_each_lookups_tier_under_constraints(model, tokenizer, kb, tmp_path):
    from conftest import run_cli

    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    prompts = PROMPTS[:3]
    proc = run_cli("generate", "--model", tmp_path / "m", "--kb", kb.path, "--json", "--max-new-tokens", "40",
                   "--constrain-lookups", "relation", "--constrain-margin", "1000", *prompts, check=True)
    printed = [json.loads(line)["lookups"] for line in proc.stdout.splitlines()]
    cfg = GenerationConfig(max_new_tokens=40, constrain_lookups="relation", constrain_margin=1000.0)
    expected = [[p.to_dict() for p in r.lookups] for r in LookupEngine(model, tokenizer, kb).generate(prompts, cfg)]
    assert printed == expected and any(printed)
    assert all(set(p) >= {"tier", "relation", "value"} for lookups in printed for p in lookups)
