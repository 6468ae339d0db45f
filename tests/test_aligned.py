"""The KB-aligned annotator against the synthetic world's gold annotation, and edge cases."""

import json

from lmlm import markup
from lmlm.annotate.aligned import AlignedAnnotator, AlignStats, date_variants
from lmlm.world import make_world


def placements(annotated: str) -> set:
    """(triplet, character offset in the plain text) of every lookup."""
    out, pos = set(), 0
    for s in markup.parse(annotated).segments:
        if isinstance(s, str):
            pos += len(s)
        else:
            out.add((s.triplet, pos + len(s.lead)))
    return out


def test_precision_and_recall_on_2000_people(tmp_path):
    make_world(tmp_path, people=2000, seed=11)
    kb = json.loads((tmp_path / "kb.json").read_text())["triplets"]
    annotator = AlignedAnnotator(map(tuple, kb))
    tp = fp = fn = 0
    for line in (tmp_path / "corpus.jsonl").read_text().splitlines():
        example = json.loads(line)
        got = annotator.annotate(example["text"])
        assert markup.strip(got) == example["text"]
        gold, mine = placements(example["annotated_text"]), placements(got)
        tp, fp, fn = tp + len(gold & mine), fp + len(mine - gold), fn + len(gold - mine)
    assert tp / (tp + fp) >= 0.98 and tp / (tp + fn) >= 0.98, (tp, fp, fn)


def test_several_entities_repeated_values_and_date_formats():
    facts = [("Ada Ashby", "Birth City", "Lorwen"), ("Bram Oakley", "Birth City", "Lorwen"), ("Ada Ashby", "Birth Date", "4 March 1950"),
             ("Bram Oakley", "Employer", "Foxglove Pharma")]
    text = "Ada Ashby was born in Lorwen on March 4, 1950. Bram Oakley, her friend, was also born in Lorwen. He works for Foxglove Pharma."
    annotated = AlignedAnnotator(facts).annotate(text)
    assert markup.strip(annotated) == text
    assert placements(annotated) == {
        (("Ada Ashby", "Birth City", "Lorwen"), text.index("Lorwen")),
        (("Ada Ashby", "Birth Date", "4 March 1950"), text.index("March 4")),
        (("Bram Oakley", "Birth City", "Lorwen"), text.rindex("Lorwen")),
        (("Bram Oakley", "Employer", "Foxglove Pharma"), text.index("Foxglove")),
    }


def test_value_before_any_mention_is_not_annotated():
    stats = AlignStats()
    annotated = AlignedAnnotator().annotate("In Lorwen lived Ada Ashby.", [("Ada Ashby", "Birth City", "Lorwen")], stats)
    assert markup.parse(annotated).lookups == [] and stats.facts_not_found == 1


def test_example_triplets_mode_uses_name_parts_and_pronouns():
    text = "Beyoncé Giselle Knowles-Carter (born September 4, 1981) is a singer. Born in Houston, she rose to fame."
    facts = [("Beyoncé Giselle Knowles-Carter", "Birth Date", "September 4, 1981"), ("Beyoncé Giselle Knowles-Carter", "Birthplace", "Houston")]
    annotated = AlignedAnnotator().annotate(text, facts)
    assert {t for t, _ in placements(annotated)} == set(facts)


def test_date_variants():
    assert "March 4, 1950" in date_variants("4 March 1950")
    assert "1950-03-04" in date_variants("March 4, 1950")
    assert date_variants("Lorwen") == []
