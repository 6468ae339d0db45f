"""The lookup grammar: round trips (property-based), escapes, and malformed pieces."""

from hypothesis import given, settings
from hypothesis import strategies as st

from lmlm import markup
from lmlm.markup import DB_END, DB_ENTITY, DB_RELATIONSHIP, DB_RETURN, Lookup

_chars = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\n")
texts = st.text(alphabet=st.one_of(_chars, st.just("\n")), min_size=1, max_size=30).filter(lambda s: not markup.contains_markup(s))
args = st.text(alphabet=_chars, min_size=1, max_size=20).map(str.strip).filter(lambda s: s and not markup.contains_markup(s))


@st.composite
def segment_lists(draw):
    """Canonical segment lists: merged text runs, and no lead-less lookup right after a space."""
    out: list = []
    for item in draw(st.lists(st.one_of(texts, st.builds(Lookup, args, args, args)), max_size=8)):
        if isinstance(item, str):
            if out and isinstance(out[-1], str):
                out[-1] += item
            else:
                out.append(item)
            continue
        lead = draw(st.sampled_from([" ", ""]))
        if out and isinstance(out[-1], str) and out[-1].endswith(" "):
            lead = " "
        out.append(Lookup(item.entity, item.relation, item.value, lead=lead))
    return out


@settings(max_examples=400, deadline=None)
@given(segment_lists(), st.sampled_from(["special", "legacy"]))
def test_parse_render_round_trip(segments, form):
    doc = markup.parse(markup.render(segments, form))
    assert doc.segments == segments
    assert doc.malformed == []
    assert all(lk.repaired is None for lk in doc.lookups)


@settings(max_examples=200, deadline=None)
@given(segment_lists(), st.sampled_from(["special", "legacy"]))
def test_strip_gives_the_text_segments(segments, form):
    assert markup.strip(markup.render(segments, form)) == "".join(s for s in segments if isinstance(s, str))


def test_reference_layout():
    legacy = "born in [dblookup('Ko Itakura', 'Birthplace') -> Yokohama] Yokohama on"
    assert markup.convert(legacy, "special") == (
        f"born in {DB_ENTITY} Ko Itakura{DB_RELATIONSHIP} Birthplace{DB_RETURN} Yokohama{DB_END} Yokohama on"
    )
    assert markup.convert(markup.convert(legacy, "special"), "legacy") == legacy
    assert markup.strip(legacy) == "born in Yokohama on"
    assert markup.triplets(legacy) == [("Ko Itakura", "Birthplace", "Yokohama")]


def test_escaped_quotes_and_awkward_values():
    text = (
        "[dblookup('Destiny\\'s Child', 'Members') -> Beyoncé, Kelly [lead], \"Michelle\"] x "
        "[dblookup('Пётр Чайковский', '出生地') -> Воткинск] y"
    )
    doc = markup.parse(text)
    assert doc.triplets == [
        ("Destiny's Child", "Members", 'Beyoncé, Kelly [lead], "Michelle"'),
        ("Пётр Чайковский", "出生地", "Воткинск"),
    ]
    assert doc.malformed == [] and all(lk.repaired is None for lk in doc.lookups)
    assert markup.render(doc.segments, "legacy") == text


def test_spans_point_at_the_calls():
    text = "A [dblookup('E', 'R') -> V] V and <|db_entity|> F<|db_relationship|> S<|db_return|> W<|db_end|> W"
    for lk in markup.parse(text).lookups:
        start, end = lk.span
        assert text[start:end] == markup.render_lookup(Lookup(lk.entity, lk.relation, lk.value, lead=""), "legacy" if text[start] == "[" else "special")


def _reasons(text):
    return [(m.offset, m.reason) for m in markup.validate(text)]


def test_malformed_pieces_are_reported_with_offsets():
    assert _reasons("ok [dblookup('E', 'R') -> V") == [(3, "unclosed lookup (no ']')")]
    assert _reasons("x [dblookup('E') -> V] V") == [(2, "missing relation")]
    assert _reasons("x [dblookup('', 'R') -> V] V") == [(2, "empty argument")]
    assert _reasons("x [dblookup('E', 'R') -> ] V") == [(2, "empty argument")]
    nested = "x [dblookup('E', 'R') -> [dblookup('F', 'S') -> V] V] V"
    assert _reasons(nested)[0] == (2, "nested or unclosed lookup (another call starts before ']')")
    assert markup.parse(nested).triplets == [("F", "S", "V")]
    assert _reasons(f"a {DB_ENTITY} E{DB_RELATIONSHIP} R") == [(2, f"unclosed {DB_ENTITY} (no {DB_RETURN})")]
    assert _reasons(f"a {DB_ENTITY} E{DB_RETURN} V{DB_END} V") == [(2, "missing relation")]
    assert _reasons(f"a {DB_END} b") == [(2, f"stray {DB_END} outside a lookup")]
    assert _reasons('the end."assistant\n\nthe end.') == [(9, "chat-template debris 'assistant'")]
    assert _reasons("<|eot_id|>") == [(0, "chat-template debris '<|eot_id|>'")]


def test_the_word_assistant_is_not_debris():
    assert markup.validate("He was an assistant\ncoach. The assistant manager.") == []


def test_malformed_pieces_never_raise_and_are_dropped_from_the_text():
    text = "a [dblookup('E', 'R') -> V] V b [dblookup('broken c"
    doc = markup.parse(text)
    assert doc.triplets == [("E", "R", "V")]
    assert doc.plain == "a V b "
    assert len(doc.malformed) == 1


def test_lenient_readings_are_marked_repaired():
    cases = {
        "[dblookup('Carson's Mall', 'Closed') -> 2018]": ("Carson's Mall", "unescaped quote"),
        "[dblookup(\"Hooke's Law\", 'Describes') -> force]": ("Hooke's Law", "double quotes"),
        "[dblookup('E','R')->V]": ("E", "spacing"),
        "[dblookup('E', 'R')] -> V]": ("E", "misplaced ']'"),
        "[dblookup('E', 'R') -> O\\'Conor]": ("E", "escaped quote in value"),
    }
    for text, (entity, why) in cases.items():
        (lookup,) = markup.parse(text).lookups
        assert lookup.entity == entity
        assert why in lookup.repaired


def test_render_rejects_unknown_form():
    import pytest

    with pytest.raises(ValueError, match="unknown markup form"):
        markup.render_lookup(Lookup("E", "R", "V"), "xml")


def test_fidelity_allows_a_title_line_and_whitespace():
    annotated = "Will Gluck (born [dblookup('Will Gluck', 'Birth Date') -> 1978] 1978)\nis here."
    assert markup.is_faithful(annotated, "Will Gluck\n\nWill Gluck (born 1978) is   here.")
    assert not markup.is_faithful(annotated, "Will Gluck (born 1979) is here.")
