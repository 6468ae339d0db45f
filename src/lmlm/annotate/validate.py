"""Checking one LLM annotation against its input text, repairing it where that is safe.

Real annotators wrap answers in code fences, leave chat-template debris, break single calls, and sometimes
repeat the passage. Safe repairs keep every good lookup and the original words:
- drop code fences, debris and broken calls (the parser already leaves them out of the segments);
- cut output that goes on after the whole input text has been reproduced;
- put the input's own words back where the annotator made small edits (a dropped comma, a fixed typo),
  moving each lookup to the same place in the input; a lookup whose place was edited is dropped.
Output that differs more than that is not repairable: the caller retries once, then rejects.
"""

from __future__ import annotations

import bisect
import dataclasses
import difflib
import re
import string
from dataclasses import dataclass, field

from lmlm import markup

MIN_SIMILARITY = 0.95  # of the stripped annotation's words to the input's, for realigning to be safe
_FENCE = re.compile(r"^\s*```[\w-]*\s*\n(.*?)\n\s*```\s*$", re.DOTALL)


@dataclass
class Verdict:
    annotated: str | None  # the accepted annotation, or None when rejected
    repairs: list[str] = field(default_factory=list)  # what was fixed, e.g. "broken_lookup", "repeated_output"
    reason: str | None = None  # why it was rejected

    @property
    def ok(self) -> bool:
        return self.annotated is not None


def check_annotation(text: str, output: str) -> Verdict:
    """Accept, repair or reject ``output`` as an annotation of ``text``."""
    repairs = []
    if (fence := _FENCE.match(output)) is not None:
        output = fence.group(1)
        repairs.append("code_fence")
    if not output.strip():
        return Verdict(None, repairs, "empty")
    doc = markup.parse(output)
    for piece in doc.malformed:
        repairs.append("broken_lookup" if piece.is_lookup else "debris")
    form = "special" if markup.DB_ENTITY in output else "legacy"
    segments = doc.segments
    if not _faithful(segments, text):
        cut = _cut_after(segments, markup.normalize_whitespace(text))
        if _faithful(cut, text):
            segments = cut
            repairs.append("repeated_output")
        elif (realigned := _realign(segments, text)) is not None:
            segments, dropped = realigned
            repairs += ["realigned"] + (["lookup_at_edit_dropped"] if dropped else [])
        else:
            return Verdict(None, repairs, "changed_text")
    annotated = markup.render(markup.join_segments(segments), form)
    return Verdict(annotated.strip(), list(dict.fromkeys(repairs)))


def _faithful(segments: list, text: str) -> bool:
    return markup.same_text(markup.Document(segments, []).plain, text)


def _realign(segments: list, text: str) -> tuple[list, int] | None:
    """``text`` with the lookups moved to their matching places and how many were dropped for want of one,
    or None when the texts differ too much.

    Words are compared, not characters: a passage has a few hundred words but thousands of characters,
    and difflib's cost grows with the square of the length.
    """
    plain, offsets = "", []
    for seg in segments:
        if isinstance(seg, markup.Lookup):
            offsets.append((len(plain), seg))
        else:
            plain += seg
    ours, theirs = _words(plain), _words(text)
    matcher = difflib.SequenceMatcher(None, [w for w, _ in ours], [w for w, _ in theirs], autojunk=False)
    if matcher.ratio() < MIN_SIMILARITY:
        return None
    where = {a + k: b + k for a, b, size in matcher.get_matching_blocks() for k in range(size)}
    starts = [start for _, start in ours]
    out, pos, dropped = [], 0, 0
    for offset, lookup in offsets:
        k = bisect.bisect_left(starts, offset)  # the word the lookup stands before
        inside_word = k > 0 and not plain[offset - 1].isspace() and offset < len(plain) and not plain[offset].isspace()
        at = None
        if k == len(ours):
            at = len(text) if k - 1 in where or not ours else None
        elif k in where:
            word = theirs[where[k]][1]
            at = max(word - (starts[k] - offset), 0)  # where the answer had it, relative to its word
            if _opens_line(text, word):  # right at the word, as the first call on a line has no space to lead
                at = word
                if at > pos or not out:
                    lookup = dataclasses.replace(lookup, lead="")
        if at is None or at < pos or inside_word:
            dropped += 1
            continue
        out += [text[pos:at], lookup]
        pos = at
    return _space_after_line_start_calls(markup.join_segments([*out, text[pos:]])), dropped


def _space_after_line_start_calls(segments: list) -> list:
    """Calls that open a line are followed by a space, as annotators write them: '[dblookup(...) -> X] X was'.

    Stripping the calls at a line's start leaves that space, which the faithfulness check ignores.
    """
    out = []
    for seg in segments:
        if isinstance(seg, str) and out and isinstance(out[-1], markup.Lookup) and not seg[:1].isspace():
            before = next((s for s in reversed(out) if isinstance(s, str)), "")
            if _opens_line(before, len(before)):
                seg = " " + seg
        out.append(seg)
    return out


def _opens_line(text: str, at: int) -> bool:
    """Is ``at`` the start of a line of ``text`` (only whitespace before it on its line)?"""
    return not text[text.rfind("\n", 0, at) + 1 : at].strip()


def _words(text: str) -> list[tuple[str, int]]:
    """Each word's match key and start; the key ignores case and punctuation, which annotators often touch."""
    return [(_key(m.group()), m.start()) for m in re.finditer(r"\S+", text)]


_PUNCTUATION = str.maketrans("", "", string.punctuation + "“”‘’–—…")


def _key(word: str) -> str:
    return word.lower().translate(_PUNCTUATION) or word


def _cut_after(segments: list, target: str) -> list:
    """The segments up to where their plain text first covers ``target``'s words (the rest is a repeat)."""
    need = len(target.replace(" ", ""))
    seen = 0
    out = []
    for seg in segments:
        if isinstance(seg, markup.Lookup):
            if seen >= need:
                break
            out.append(seg)
            continue
        chars = len("".join(seg.split()))
        if seen + chars <= need:
            out.append(seg)
            seen += chars
            continue
        out.append(_prefix_with(seg, need - seen))
        break
    return out


def _prefix_with(text: str, chars: int) -> str:
    """The shortest prefix of ``text`` holding ``chars`` non-space characters."""
    count = 0
    for i, c in enumerate(text):
        if count == chars:
            return text[:i]
        count += not c.isspace()
    return text
