"""The engine's paths, fast: a scripted language model instead of a trained one, with a real byte-level
tokenizer and a real SQLite knowledge base.

``ScriptedLM`` implements the HF call the engine makes (input_ids, attention_mask, past_key_values,
use_cache, logits_to_keep -> .logits). It writes the token ids it is fed into the engine's KV cache and
decides each position's next token from the tokens the attention mask lets it see, like a real LM: so a
forced answer that never entered the cache, or a rejected draft that was not retracted, changes what it
writes. Its rule (``LMLMScript``): follow the stories it was given (the longest suffix of its context found
in them), and after a call's <|db_end|> copy the value it was answered with, then write "." and stop.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from transformers import PretrainedConfig

from lmlm.engine import ChosenValue, GenerationConfig, LookupEngine, LookupTokens, choose, choose_value, sampling_generator
from lmlm.engine.cache import CacheTrack
from lmlm.engine.state import WIDE_STEP_MAX_ROWS
from lmlm.kb import SqliteKB
from lmlm.kb.encoder import HashingEncoder
from lmlm.serve import fact_segments
from lmlm.tokenizer import train_tokenizer

STORIES = [
    "Ada Ashby was born in <|db_entity|> Ada Ashby<|db_relationship|> Birth City<|db_return|>",
    "Bram Oakley was born in <|db_entity|> Bram Oakley<|db_relationship|> Birth City<|db_return|>",
    "Cleo Dunmore was born in <|db_entity|> Cleo Dunmore<|db_relationship|> Birth City<|db_return|>",
    "Nobody Known was born in <|db_entity|> Nobody Known<|db_relationship|> Birth City<|db_return|>",
    "Ada Ashby works in the city of Lyon. She also lives in <|db_entity|> Ada Ashby<|db_relationship|> Home City<|db_return|>",
]
PROMPTS = ["Ada Ashby was born", "Bram Oakley was born", "Cleo Dunmore was born"]
FACTS = [("Ada Ashby", "Birth City", "Paris"), ("Bram Oakley", "Birth City", "Rome"), ("Cleo Dunmore", "Birth City", "New York"),
         ("Ada Ashby", "Home City", "Lyon")]
GREEDY = GenerationConfig(max_new_tokens=64, ngram_drafts=False, draft_values=False)  # every draft off: the plain path


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer([*STORIES, "Paris Rome New York Lyon. unknown"], vocab_size=300)


@pytest.fixture
def kb(tmp_path):
    kb = SqliteKB(tmp_path / "kb.sqlite", encoder=HashingEncoder(), create=True)  # a real encoder, quick to load
    kb.import_triplets(FACTS)
    yield kb
    kb.close()


class LMLMScript:
    """The next token for a context: the value's copy after a call, else what follows the context's longest
    suffix in the stories, else eos. ``second`` is each position's runner-up (what a ban falls back to)."""

    def __init__(self, tokenizer, stories=STORIES):
        self.tokens = LookupTokens(tokenizer)
        self.stories = [tokenizer.encode(s) for s in stories]
        self.period = tokenizer.encode(".", add_special_tokens=False)[0]

    def __call__(self, context: list[int]) -> int:
        t = self.tokens
        if t.end in context:
            last_end = len(context) - 1 - context[::-1].index(t.end)
            last_ret = max(i for i in range(last_end) if context[i] == t.ret)
            value, after = context[last_ret + 1 : last_end], context[last_end + 1 :]
            if after == value:
                return self.period
            if len(after) < len(value) and after == value[: len(after)]:
                return value[len(after)]
            if after[-1:] == [self.period]:
                return t.eos
        for n in range(len(context), 0, -1):
            for story in self.stories:
                for p in range(len(story) - n - 1, -1, -1):
                    if story[p : p + n] == context[-n:]:
                        return story[p + n]
        return t.eos


class ScriptedLM(torch.nn.Module):
    """A causal LM whose logits come from ``script(visible context)``: 20 on its token, 10 on eos (the runner-up)."""

    def __init__(self, tokenizer, script=None, vocab: int | None = None):
        super().__init__()
        self.vocab = vocab or len(tokenizer)
        self.script = script or LMLMScript(tokenizer)
        self.eos = tokenizer.eos_token_id
        self.config = PretrainedConfig(num_hidden_layers=1, max_position_embeddings=256)
        self.head = torch.nn.Linear(2, self.vocab, bias=False)  # for the engine's vocabulary size and device
        self.widths: list[int] = []  # the width of every forward
        self.contexts: list[list[int]] = []  # the visible context of every position whose logits were kept

    def get_output_embeddings(self):
        return self.head

    def forward(self, input_ids, attention_mask, past_key_values, use_cache=True, logits_to_keep=1, **_):
        self.widths.append(input_ids.shape[1])
        ids = input_ids[:, None, :, None].float()
        cached = past_key_values.update(ids, ids, 0)[0][:, 0, :, 0].long()  # every token fed so far, by row
        width, total = input_ids.shape[1], cached.shape[1]
        logits = torch.zeros(input_ids.shape[0], logits_to_keep, self.vocab)
        for b in range(input_ids.shape[0]):
            for k, pos in enumerate(range(total - logits_to_keep, total)):
                context = [int(cached[b, j]) for j in range(pos + 1) if attention_mask[b, j]]
                if pos >= total - width and not attention_mask[b, pos]:  # left padding: never read
                    continue
                self.contexts.append(context)
                logits[b, k, self.eos] = 10.0
                logits[b, k, self.script(context)] = 20.0
        return type("Output", (), {"logits": logits})()


def text_of(tokenizer, ids):
    return tokenizer.decode(ids, skip_special_tokens=False)


# --- forced tokens ----------------------------------------------------------------------------------------------------


def test_a_call_answered_from_the_kb_is_fed_back_token_by_token(tokenizer, kb):
    """With more rows than WIDE_STEP_MAX_ROWS every step after the prompt is one token wide: the answer's
    tokens wait in the row's forced_tokens and enter the cache one per step, streamed as forced; the model
    then copies the value it sees in its context."""
    model = ScriptedLM(tokenizer)
    prompts = [PROMPTS[0]] * (WIDE_STEP_MAX_ROWS + 1)  # the rows finish together: the steps stay narrow
    streamed = []
    results = LookupEngine(model, tokenizer, kb).generate(prompts, GREEDY, on_token=lambda *event: streamed.append(event))
    assert set(model.widths[1:]) == {1}
    ada = results[0]
    call = " in <|db_entity|> Ada Ashby<|db_relationship|> Birth City<|db_return|>"
    assert text_of(tokenizer, ada.token_ids) == call + " Paris<|db_end|> Paris.<|end_of_text|>"
    assert ada.text == " in Paris." and [p.value for p in ada.lookups] == ["Paris"]
    forced = [token for row, token, was_forced in streamed if row == 0 and was_forced]
    assert forced == tokenizer.encode(" Paris", add_special_tokens=False) + [LookupTokens(tokenizer).end]
    assert [token for row, token, _ in streamed if row == 0] == ada.token_ids


def test_with_few_rows_the_answer_is_fed_in_one_step(tokenizer, kb):
    model = ScriptedLM(tokenizer)
    wide = LookupEngine(model, tokenizer, kb).generate(PROMPTS[:1], GREEDY)[0]
    narrow = LookupEngine(ScriptedLM(tokenizer), tokenizer, kb).generate(PROMPTS * 3, GREEDY)[0]
    assert wide.token_ids == narrow.token_ids
    assert text_of(tokenizer, LookupEngine(model, tokenizer, kb).generate(PROMPTS[2:], GREEDY)[0].token_ids).endswith(
        " New York<|db_end|> New York.<|end_of_text|>")
    answer = len(tokenizer.encode(" Paris", add_special_tokens=False)) + 1  # and <|db_end|>
    assert 1 + answer in model.widths  # the call's <|db_return|> with the whole answer after it


def test_only_a_prompt_that_ends_inside_a_call_is_answered(tokenizer, kb):
    engine = LookupEngine(ScriptedLM(tokenizer), tokenizer, kb)
    open_call = engine.generate(["Ada Ashby was born in <|db_entity|> Ada Ashby<|db_relationship|> Birth City<|db_return|>"], GREEDY)[0]
    bare = engine.generate(["Ada Ashby was born in<|db_return|>"], GREEDY)[0]
    assert [p.value for p in open_call.lookups] == ["Paris"]
    assert bare.lookups == [] and not text_of(tokenizer, bare.token_ids).startswith(" Paris<|db_end|>")


def test_fact_segments_come_from_the_engine(tokenizer, kb):
    result = LookupEngine(ScriptedLM(tokenizer), tokenizer, kb).generate(PROMPTS[:1], GREEDY)[0]
    assert result.text_offsets == [len(" in")]
    assert fact_segments(result) == [{"text": " in"}, {"text": " "}, {"text": "Paris", "fact": 0}, {"text": "."}]
    budget = result.token_ids.index(LookupTokens(tokenizer).ret) + 2  # the call and the first token of its answer
    cut = LookupEngine(ScriptedLM(tokenizer), tokenizer, kb).generate(PROMPTS[:1], GenerationConfig(max_new_tokens=budget))[0]
    assert cut.token_ids[-1] != LookupTokens(tokenizer).end and fact_segments(cut) == [{"text": " in"}, {"text": "", "fact": 0}]


# --- no-answer fallbacks -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fallback, raw, text", [
    ("unknown", " unknown<|db_end|> unknown.", " in unknown."),
    ("top1_anyway", " unknown<|db_end|> unknown.", " in unknown."),  # no fact is near: "unknown" too
    ("abstain", "<|db_end|>", " in"),  # the row closes the call and stops
])
def test_a_call_the_kb_cannot_answer_gets_the_fallback(tokenizer, kb, fallback, raw, text):
    result = LookupEngine(ScriptedLM(tokenizer), tokenizer, kb).generate(["Nobody Known was born"], GenerationConfig(fallback=fallback))[0]
    assert result.raw == " in <|db_entity|> Nobody Known<|db_relationship|> Birth City<|db_return|>" + raw and result.text == text
    value = raw.split("<")[0].strip()
    assert [(p.entity, p.value, p.tier, p.triplet_id) for p in result.lookups] == [("Nobody Known", value, "none", None)]


def test_the_fallback_is_decided_in_one_place(kb):
    triplet = kb.lookup("Ada Ashby", "Birth City").triplet
    found, missing = kb.lookup("Ada Ashby", "Birth City"), kb.lookup("Nobody", "Birth City")
    near = type(missing)(None, None, 0.3, "none", nearest=triplet)
    assert choose_value(found, "abstain") == choose_value(found, "unknown") == ChosenValue("Paris", triplet, "exact", False)
    assert [tuple(vars(choose_value(near, f)).values()) for f in ("top1_anyway", "unknown", "abstain")] == [
        ("Paris", triplet, "nearest", False), ("unknown", None, "none", False), ("", None, "none", True)]
    assert choose_value(missing, "top1_anyway").value == "unknown"


# --- the lookup cap ----------------------------------------------------------------------------------------------------


def test_max_lookups_bans_further_calls(tokenizer, kb):
    """The story calls twice; with max_lookups=1 the second <|db_entity|> is banned and the runner-up (eos) wins."""
    engine, t = LookupEngine(ScriptedLM(tokenizer), tokenizer, kb), LookupTokens(tokenizer)
    prompt = "Ada Ashby works in the city of Lyon. She also lives in"
    two = engine.generate([prompt], GenerationConfig(max_lookups=2))[0]
    assert [p.value for p in two.lookups] == ["Lyon"] and two.token_ids.count(t.entity) == 1  # the prompt's call is not counted
    one = engine.generate([PROMPTS[0] + " in <|db_entity|> Ada Ashby<|db_relationship|> Birth City<|db_return|> Paris<|db_end|> Paris. "
                           "Ada Ashby works in the city of Lyon. She also lives in"], GenerationConfig(max_lookups=1))[0]
    assert one.lookups == [] and one.token_ids == [t.space, t.eos]
    assert engine.generate([prompt], GenerationConfig(max_lookups=0))[0].token_ids == [t.space, t.eos]


# --- drafts: accept, reject, retract, settle ---------------------------------------------------------------------------


class Poisoned:
    """The main script, but eos once ``wrong`` is in the context before the current position: a wrong draft
    token that stayed in the cache changes everything after it."""

    def __init__(self, script, wrong: int):
        self.script, self.wrong = script, wrong

    def __call__(self, context):
        return self.script.tokens.eos if self.wrong in context[:-1] else self.script(context)


class WrongAfter:
    """A draft model's script: the main script's token, except a wrong one (unk) once a row has ``right``
    tokens after the prompt."""

    def __init__(self, tokenizer, right: dict[str, int]):
        self.script, self.tokenizer, self.right = LMLMScript(tokenizer), tokenizer, right
        self.wrong = tokenizer.unk_token_id  # in no story
        self.prompts = {name: tokenizer.encode(f"{name} was born") for name in right}

    def __call__(self, context):
        name = next(n for n, prompt in self.prompts.items() if context[: len(prompt)] == prompt)
        return self.wrong if len(context) - len(self.prompts[name]) == self.right[name] else self.script(context)


def test_draft_model_proposals_are_accepted_or_rejected_row_by_row(tokenizer, kb):
    """Three rows at once, whose draft model goes wrong at different points (and proposes up to a call's
    <|db_return|>, so proposals differ in length): the tokens are those of decoding without drafts, a batch
    equals its rows run alone, and wrong proposals were rejected and retracted from both caches."""
    plain = [r.token_ids for r in LookupEngine(ScriptedLM(tokenizer), tokenizer, kb).generate(PROMPTS, GREEDY)]
    right = {"Ada Ashby": 2, "Bram Oakley": 5, "Cleo Dunmore": 100}
    wrong = WrongAfter(tokenizer, right)
    draft = ScriptedLM(tokenizer, wrong)
    model = ScriptedLM(tokenizer, Poisoned(LMLMScript(tokenizer), wrong.wrong))
    engine = LookupEngine(model, tokenizer, kb, draft_model=draft)
    cfg = GenerationConfig(max_new_tokens=64, draft_tokens=4)
    assert [r.token_ids for r in engine.generate(PROMPTS, cfg)] == plain
    batched = dict(engine.draft_stats)
    assert batched["rejected"] >= 2 and batched["drafted"] > batched["rejected"] and batched["calls"] >= 1
    engine.draft_stats = dict.fromkeys(engine.draft_stats, 0)
    assert [engine.generate([p], cfg)[0].token_ids for p in PROMPTS] == plain
    assert engine.draft_stats == batched


def test_choose_tokens_accepts_each_rows_draft_up_to_its_first_miss(tokenizer, kb):
    """Rows with drafts of 3, 2 and 0 tokens; the model agrees with all of the first, the first token of the
    second: the first takes 3 drafted tokens and its own, the second 1 and its own, the third its own."""
    engine, t = LookupEngine(ScriptedLM(tokenizer), tokenizer, kb), LookupTokens(tokenizer)
    story = tokenizer.encode(" works in the city of Lyon.", add_special_tokens=False)
    batch = engine.start_batch([tokenizer.encode("Ada Ashby")] * 3, GREEDY)
    batch.rows[0].draft, batch.rows[1].draft = story[:3], [story[0], t.entity]
    logits = torch.zeros(3, 4, len(tokenizer))
    for b in range(3):
        for k in range(4):  # right-aligned: a row's k-th choice sits at position 4 - 1 - len(draft) + k
            at = 4 - 1 - len(batch.rows[b].draft) + k
            if at < 4:
                logits[b, at, story[k]] = 20.0
    rejected = engine.choose_tokens(batch, logits, [(0, 0), (1, 1), (2, 2)])
    assert [r.generated for r in batch.rows] == [story[:4], story[:2], story[:1]]
    assert rejected == {1: 1} and engine.draft_stats == {"drafted": 5, "rejected": 1, "calls": 0}


def test_retracted_tokens_leave_the_context(tokenizer):
    """CacheTrack.retract masks a row's last tokens out and steps its position back; select drops rows."""
    model = ScriptedLM(tokenizer, script=lambda context: 0)
    track = CacheTrack(model, model, pad=0, rows=2, capacity=4, device=torch.device("cpu"))
    track.step([[5, 6], [7]])
    track.step([[8, 9, 10], [11]])
    track.retract(0, 2)
    track.step([[12], [13]])
    assert model.contexts[-2:] == [[5, 6, 8, 12], [7, 11, 13]]
    assert track.next_pos.tolist() == [4, 3]
    track.select(torch.tensor([1]))
    track.step([[14]])
    assert model.contexts[-1] == [7, 11, 13, 14] and track.cache.layers[0].k_buffer.shape[0] == 1


def test_the_draft_models_placeholders_are_settled_out(tokenizer, kb):
    """The first row's proposal ends early (at the <|db_return|> of a call whose entity is in the prompt) while
    the second's goes on: the first pads the draft model's trial columns, and settle must retract the padding
    with the rejected tokens. A draft model with the model's own script is then never wrong: were the padding
    left in its cache, it would copy it as a value, and be rejected."""
    engine = LookupEngine(ScriptedLM(tokenizer), tokenizer, kb, draft_model=ScriptedLM(tokenizer))
    prompts = [PROMPTS[0] + " in <|db_entity|> Ada Ashby<|db_relationship|>", "Ada Ashby works in the city"]
    results = engine.generate(prompts, GenerationConfig(max_new_tokens=64, draft_tokens=4))
    plain = LookupEngine(ScriptedLM(tokenizer), tokenizer, kb).generate(prompts, GREEDY)
    assert [r.token_ids for r in results] == [r.token_ids for r in plain]
    assert engine.draft_stats["calls"] == 2 and engine.draft_stats["drafted"] > 10 and engine.draft_stats["rejected"] == 0


# --- sampling ----------------------------------------------------------------------------------------------------------


def test_choose_applies_top_k_and_top_p():
    probs = torch.tensor([[0.4, 0.3, 0.2, 0.1]])
    scores = probs.log().repeat(400, 1)
    def draw(**options) -> set[int]:
        return set(choose(scores, GenerationConfig(do_sample=True, **options), sampling_generator(0, "cpu")).tolist())

    assert draw() == {0, 1, 2, 3}
    assert draw(top_k=2) == {0, 1}
    assert draw(top_p=0.5) == {0, 1}  # 0.4 + 0.3 reach it
    assert draw(top_k=3, top_p=0.95) == {0, 1, 2}
    assert draw(temperature=1e-4) == {0}
    assert set(choose(scores, GenerationConfig(top_k=2), None).tolist()) == {0}  # greedy


def test_the_engine_samples_with_top_k(tokenizer, kb):
    """A script that leaves four tokens nearly tied: sampling draws among the top two with top_k=2, greedy
    takes the first; both would fail if the engine ignored do_sample or top_k."""
    words = [tokenizer.encode(w, add_special_tokens=False)[0] for w in (" Paris", " Rome", " Lyon", " unknown")]

    class Tied(ScriptedLM):
        def forward(self, input_ids, attention_mask, past_key_values, use_cache=True, logits_to_keep=1, **_):
            past_key_values.update(*(input_ids[:, None, :, None].float(),) * 2, 0)
            logits = torch.full((input_ids.shape[0], logits_to_keep, self.vocab), -10.0)
            logits[..., words] = torch.tensor([3.0, 2.9, 2.8, 2.7])
            return type("Output", (), {"logits": logits})()

    engine = LookupEngine(Tied(tokenizer), tokenizer, None)
    cfg = GenerationConfig(max_new_tokens=60, use_lookups=False, repetition_penalty=1.0, do_sample=True, top_k=2, seed=1)
    sampled = engine.generate(["Ada"], cfg)[0].token_ids
    assert set(sampled) == set(words[:2])
    greedy = GenerationConfig(max_new_tokens=10, use_lookups=False, repetition_penalty=1.0)
    assert set(engine.generate(["Ada"], greedy)[0].token_ids) == {words[0]}
    assert set(engine.generate(["Ada"], GenerationConfig(**{**vars(cfg), "top_k": 0}))[0].token_ids) == set(words)


# --- holding a value's repeat -------------------------------------------------------------------------------------------

class MiscopyScript(LMLMScript):
    """After <|db_end|>: restates a value's first two tokens (a space and a letter), then writes "." instead of the
    rest; or, for the values in ``elsewhere``, writes "." at once."""

    def __init__(self, tokenizer, elsewhere=()):
        super().__init__(tokenizer)
        self.elsewhere = [tokenizer.encode(" " + value, add_special_tokens=False) for value in elsewhere]

    def __call__(self, context: list[int]) -> int:
        token = super().__call__(context)
        if self.tokens.end not in context or token in (self.period, self.tokens.eos):
            return token
        last_end = len(context) - 1 - context[::-1].index(self.tokens.end)
        value = context[max(i for i in range(last_end) if context[i] == self.tokens.ret) + 1 : last_end]
        written = len(context) - 1 - last_end
        return self.period if written == 2 or (written == 0 and value in self.elsewhere) else token


@pytest.mark.parametrize("cfg", [GREEDY, GenerationConfig(max_new_tokens=64)], ids=["plain", "drafted"])
def test_a_held_value_is_restated_whole_once_begun(tokenizer, kb, cfg):
    engine = LookupEngine(ScriptedLM(tokenizer, MiscopyScript(tokenizer)), tokenizer, kb)
    miscopied, held = (engine.generate(["Cleo Dunmore was born"], replace(cfg, hold_value_repeat=hold))[0] for hold in (False, True))
    assert "New York" not in miscopied.text and held.text.endswith(" in New York.")
    assert miscopied.lookups[0].value == held.lookups[0].value == "New York"


def test_in_one_batch_only_the_rows_that_began_their_value_are_held(tokenizer, kb):
    engine = LookupEngine(ScriptedLM(tokenizer, MiscopyScript(tokenizer, elsewhere=["Paris", "Rome"])), tokenizer, kb)
    free, held = (engine.generate(PROMPTS, replace(GREEDY, hold_value_repeat=hold)) for hold in (False, True))
    assert [r.token_ids for r in free[:2]] == [r.token_ids for r in held[:2]]  # they wrote "." at once: nothing to hold
    assert [r.text.split(" in")[-1] for r in held] == [".", ".", " New York."]
    assert "New York" not in free[2].text


def test_a_space_alone_does_not_begin_a_held_value_a_new_call_after_it_is_free(tokenizer, kb):
    class SpaceThenCall(LMLMScript):  # after <|db_end|>: " <|db_entity|>", a new call, where the value starts with " "
        def __call__(self, context):
            t = self.tokens
            if t.end in context and t.entity not in context[len(context) - 1 - context[::-1].index(t.end):]:
                after = context[len(context) - 1 - context[::-1].index(t.end) + 1:]
                return t.space if not after else t.entity if after == [t.space] else t.eos
            return super().__call__(context)

    assert tokenizer.encode(" New York", add_special_tokens=False)[0] == LookupTokens(tokenizer).space
    engine = LookupEngine(ScriptedLM(tokenizer, SpaceThenCall(tokenizer)), tokenizer, kb)
    free, held = (engine.generate(["Cleo Dunmore was born"], replace(GREEDY, hold_value_repeat=hold, max_new_tokens=40))[0]
                  for hold in (False, True))
    assert held.token_ids == free.token_ids
    assert "New York<|db_end|> <|db_entity|>" in held.raw
