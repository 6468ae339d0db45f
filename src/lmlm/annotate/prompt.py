"""The annotation prompt: our instructions and worked examples, versioned.

Every output example records ``prompt_id``; change PROMPT_ID whenever the text below changes, so caches
and downstream filters never mix annotations made under different instructions.
"""

from __future__ import annotations

PROMPT_ID = "lmlm-annotate-v1"

INSTRUCTIONS = """\
You annotate text for a language model that looks facts up in a database instead of memorizing them.
Copy the text exactly and insert a lookup call right before the words that state a specific fact:

    [dblookup('ENTITY', 'RELATION') -> VALUE] VALUE-AS-IN-TEXT

Rules:
1. One atomic fact per lookup: a single entity, a single relation, a single short value.
2. ENTITY is the full, unambiguous name ("Marie Curie", not "she" or "Curie").
3. RELATION is a short, reusable attribute name in Title Case ("Birth Date", "Spouse", "Capital", "Founded By").
4. VALUE is the fact as briefly as possible, usually the exact words that follow the call.
5. Annotate facts a reader would look up (names, dates, places, numbers, titles); skip opinions and common knowledge.
6. Never change, add, drop or reorder the original words. Removing every lookup call must give back the text exactly.
7. Output only the annotated text: no preamble, no explanations, no code fences."""

EXAMPLES = (
    (
        "The Hoover Dam was completed in 1936 on the Colorado River. It was named after Herbert Hoover.",
        (
            "The Hoover Dam was completed in [dblookup('Hoover Dam', 'Completion Year') -> 1936] 1936 on the "
            "[dblookup('Hoover Dam', 'River') -> Colorado River] Colorado River. It was named after "
            "[dblookup('Hoover Dam', 'Named After') -> Herbert Hoover] Herbert Hoover."
        ),
    ),
    (
        "Ada Lovelace, born in London, worked with Charles Babbage on the Analytical Engine.",
        (
            "Ada Lovelace, born in [dblookup('Ada Lovelace', 'Birthplace') -> London] London, worked with "
            "[dblookup('Ada Lovelace', 'Collaborator') -> Charles Babbage] Charles Babbage on the "
            "[dblookup('Charles Babbage', 'Notable Work') -> Analytical Engine] Analytical Engine."
        ),
    ),
)


def chat_messages(text: str) -> list[dict]:
    """The full chat for an instruction-following endpoint: instructions, worked examples, then ``text``."""
    messages = [{"role": "system", "content": INSTRUCTIONS}]
    for plain, annotated in EXAMPLES:
        messages += [{"role": "user", "content": plain}, {"role": "assistant", "content": annotated}]
    return messages + [{"role": "user", "content": text}]


def encode_prompt(tokenizer, text: str) -> list[int]:
    """The token ids a fine-tuned annotator sees: the plain text only, through the chat template if there is one.

    Fine-tuned annotators learn the task from data, so they get no instructions (as in the reference).
    Training and inference both call this, so they cannot drift apart.
    """
    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
        return tokenizer(prompt, add_special_tokens=False).input_ids
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return bos + tokenizer(f"### Text:\n{text}\n### Annotated:\n", add_special_tokens=False).input_ids
