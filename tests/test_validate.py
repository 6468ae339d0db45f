"""Validation and safe repair of LLM annotations."""

from hypothesis import given, settings
from hypothesis import strategies as st

from lmlm import markup
from lmlm.annotate.validate import check_annotation
from lmlm.corpus import read_corpus

REST = (" She studied in Paris, where she met Pierre, and together they studied the rays that some elements give off."
        " Her notebooks are still kept in lead-lined boxes, and visitors who want to read them must sign a waiver first.")
TEXT = "Marie Curie was born in Warsaw in 1867, and she won the Nobel Prize in Physics." + REST
GOOD = ("Marie Curie was born in [dblookup('Marie Curie', 'Birthplace') -> Warsaw] Warsaw in "
        "[dblookup('Marie Curie', 'Birth Year') -> 1867] 1867, and she won the Nobel Prize in Physics." + REST)


def test_a_clean_annotation_is_accepted_unchanged():
    verdict = check_annotation(TEXT, GOOD)
    assert verdict.ok and verdict.annotated == GOOD and verdict.repairs == []


def test_fences_debris_and_a_repeated_answer_are_cut():
    verdict = check_annotation(TEXT, "```text\n" + GOOD + "<|eot_id|>assistant\n" + GOOD + "\n```")
    assert verdict.annotated == GOOD
    assert verdict.repairs == ["code_fence", "debris", "repeated_output"]


def test_a_broken_call_is_dropped_and_the_good_ones_kept():
    broken = GOOD.replace("in [dblookup('Marie Curie', 'Birth Year')", "in [dblookup('Marie Curie', [dblookup('Marie Curie', 'Birth Year')")
    verdict = check_annotation(TEXT, broken)
    assert verdict.ok and verdict.repairs == ["broken_lookup"]
    assert markup.triplets(verdict.annotated) == markup.triplets(GOOD)


def test_small_edits_are_undone_and_each_lookup_keeps_its_place():
    edited = GOOD.replace("1867,", "1867").replace("Physics.", "physics!")  # the annotator dropped a comma, changed a word
    verdict = check_annotation(TEXT, edited)
    assert verdict.repairs == ["realigned"]
    assert verdict.annotated == GOOD  # the input's own words, the lookups where they were


def test_a_lookup_inside_a_word_is_dropped_when_realigning():
    text = "Marie Curie was born in Warsaw in 1867 and worked on radioactivity." + REST
    edited = "Marie Curie was born in Warsaw in 1867, and worked on radio[dblookup('Marie Curie', 'Field') -> activity]activity." + REST
    verdict = check_annotation(text, edited)
    assert verdict.repairs == ["realigned", "lookup_at_edit_dropped"]
    assert verdict.annotated == text


def test_rewritten_and_empty_answers_are_rejected_with_a_reason():
    assert check_annotation(TEXT, GOOD.replace("e", "a")).reason == "changed_text"
    assert check_annotation(TEXT, "  \n").reason == "empty"
    assert check_annotation(TEXT, "Here is the text with lookups inserted where facts are stated: " + GOOD).reason == "changed_text"
    short_preamble = check_annotation(TEXT, "Sure! " + GOOD)  # 1 new word of 54: a small edit, undone
    assert short_preamble.annotated == GOOD and short_preamble.repairs == ["realigned"]


@settings(max_examples=60, deadline=None)
@given(drop=st.sets(st.integers(0, 60), max_size=2), comma=st.booleans())
def test_any_accepted_annotation_strips_to_the_input(drop, comma):
    words = GOOD.split(" ")
    edited = " ".join(w for i, w in enumerate(words) if i not in drop or "dblookup" in w or "->" in w)
    if comma:
        edited = edited.replace(",", "", 1)
    verdict = check_annotation(TEXT, edited)
    if verdict.ok:
        assert markup.is_faithful(verdict.annotated, TEXT)


def test_on_real_annotations_every_accepted_one_strips_to_its_text(corpora):
    accepted = total = 0
    for path in corpora:
        for example in read_corpus(path).examples:
            verdict = check_annotation(example["text"], example["annotated_text"])
            total += 1
            if verdict.ok:
                accepted += 1
                assert markup.is_faithful(verdict.annotated, example["text"]), (path.name, verdict.repairs)
                assert len(markup.triplets(verdict.annotated)) <= len(markup.triplets(example["annotated_text"]))
    assert accepted / total > 0.85  # measured 0.88 on the shared corpora: most real annotations are usable
