"""The n-gram table the engine drafts from, and drafts from a row's own text."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlm.engine import repeated_ngram
from lmlm.errors import LmlmError
from lmlm.ngrams import NgramTable

TEXT = [[1, 2, 3, 4, 5], [1, 2, 3, 4, 6], [7, 2, 3, 9]]


def test_proposes_the_likely_follower_of_the_longest_context():
    table = NgramTable.from_token_ids(TEXT, longest=3, min_share=0.6)
    assert table.propose([1, 2], 4) == [3, 4, 5]  # then (2, 3, 4) is followed by 5 and 6 alike: 5, the first seen, is a guess that ends it
    assert table.propose([7, 2, 3], 2) == [9]  # (7, 2, 3) -> 9 wins over (2, 3) -> 4
    assert table.propose([5, 2, 3], 1) == [4]  # (5, 2, 3) never occurred: (2, 3) -> 4, 2 times in 3
    assert table.propose([8], 3) == [] and table.propose([], 3) == []  # never seen: no guess either
    strict = NgramTable.from_token_ids(TEXT, longest=3, min_share=0.9)
    assert strict.propose([5, 2, 3], 3) == [4]  # (2, 3) -> 4 only 2 times in 3: a guess, and the proposal ends
    assert strict.propose([7, 2], 3) == [3, 9]


@settings(max_examples=50, deadline=None)
@given(st.permutations(list(range(12))), st.integers(1, 11), st.integers(1, 5), st.integers(1, 4))
def test_a_text_without_repeats_is_proposed_back(text, start, count, longest):
    """Every context of a text whose tokens are all different has one follower: the rest of the text."""
    table = NgramTable.from_token_ids([text], longest=longest, min_share=1.0)
    assert table.propose(text[:start], count) == text[start : start + count]


E, R, RET = 100, 101, 102  # <|db_entity|>, <|db_relationship|>, <|db_return|>
CALLS = [[1, 2, E, 7, 8, R, 20, 21, RET, 30],  # "born in <|db_entity|> NAME<|db_relationship|> Birth City<|db_return|> VALUE"
         [3, 1, 2, E, 9, R, 20, 21, RET, 31],
         [5, 6, E, 9, R, 22, RET, 32],  # "works for ..." -> Employer
         [5, 6, E, 7, 8, R, 22, RET, 33]]


def test_a_relation_follows_the_words_before_its_call(tmp_path):
    """Inside a call's relation the table reads the words before the call, not the entity's name."""
    table = NgramTable.from_token_ids(CALLS, longest=3, min_share=0.6, calls=(E, R, RET))
    # a name never seen; then a guess of the value (the engine cuts a draft at <|db_return|>, to answer it)
    assert table.propose([4, 1, 2, E, 55, 56, R], 4) == [20, 21, RET, 30]
    assert table.propose([5, 6, E, 57, R], 4) == [22, RET, 32]
    assert table.propose([1, 2, E, 55, 56, R, 20, 21, RET, 40, 5, 6, E, 58, R], 2) == [22, RET]  # the last call counts
    assert table.propose([1, 2, E, 55, 56], 2) == []  # the entity itself is read as text: never seen
    # without the view of calls, <|db_relationship|> is followed by either relation: a guess of the first
    assert NgramTable.from_token_ids(CALLS, longest=3, min_share=0.6).propose([4, 1, 2, E, 55, 56, R], 4) == [20]
    loaded = NgramTable.load(table.save(tmp_path / "t.json"))
    assert loaded.calls == (E, R, RET) and loaded.propose([5, 6, E, 57, R], 2) == [22, RET]


def test_counts_stop_at_max_tokens():
    table = NgramTable.from_token_ids(TEXT, longest=2, max_tokens=5)
    assert (7,) not in table.next_token and (4,) in table.next_token


def test_save_and_load(tmp_path):
    table = NgramTable.from_token_ids(TEXT, longest=3, min_share=0.6)
    loaded = NgramTable.load(table.save(tmp_path / "t.json"))
    assert (loaded.next_token, loaded.guesses, loaded.longest) == (table.next_token, table.guesses, table.longest)
    assert table.guesses == {(2, 3, 4): 5, (3, 4): 5, (4,): 5}
    (tmp_path / "bad.json").write_text('{"longest": 3, "contexts": [[1, 2')
    with pytest.raises(LmlmError, match=r"bad\.json: not an n-gram table"):
        NgramTable.load(tmp_path / "bad.json")
    (tmp_path / "long.json").write_text(json.dumps({"longest": 1, "contexts": [[1, 2, 3]]}))
    with pytest.raises(LmlmError, match=r"long\.json: a context is empty or longer than longest=1"):
        NgramTable.load(tmp_path / "long.json")


def test_repeated_ngram_drafts_what_followed_the_last_occurrence():
    assert repeated_ngram([5, 6, 7, 8, 5, 6, 9, 5, 6], 2) == [9, 5]  # the last earlier (5, 6)
    assert repeated_ngram([3, 1, 2, 7, 9, 1, 2, 8, 3, 1, 2], 1) == [7]  # (3, 1, 2) occurred before: longer than the later (1, 2)
    assert repeated_ngram([5, 6, 7, 5], 2) == []  # one token recurs too often to say what follows it
