"""Realigning an annotation whose words were slightly edited gives the same markup as an unedited answer."""

import pytest

from lmlm.annotate.validate import check_annotation

TEXT = ("Jane Sagan worked as a chemist at the Lorwen Institute for most of her life, and she wrote three books "
        "about the rivers of the northern valleys.")
MENTION = "[dblookup('Jane Sagan', 'Mention') -> Jane Sagan] "
JOB = "[dblookup('Jane Sagan', 'Occupation') -> chemist] "
EMPLOYER = "[dblookup('Jane Sagan', 'Employer') -> Lorwen Institute] "
ANNOTATED = f"{MENTION}Jane Sagan worked as a chemist at the {EMPLOYER}Lorwen Institute" + TEXT.split("Institute", 1)[1]


@pytest.mark.parametrize("title, calls", [("", MENTION), ("Jane Sagan\n", MENTION), ("", MENTION + JOB)],
                         ids=["text_start", "line_start", "two_calls_at_text_start"])
def test_a_realigned_call_at_the_start_keeps_the_space_after_it(title, calls):
    text = title + TEXT
    canonical = title + calls + ANNOTATED.removeprefix(MENTION)
    edited = canonical.replace("life, and", "life and")  # a dropped comma: realigned to the input's words
    unedited, realigned = check_annotation(text, canonical), check_annotation(text, edited)
    assert unedited.annotated == canonical and unedited.repairs == []
    assert realigned.repairs == ["realigned"]
    assert realigned.annotated == canonical
