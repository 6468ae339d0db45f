"""An LLM judge for factual precision where no exact ground truth exists (real data), behind any
OpenAI-compatible endpoint: it splits a generated text into atomic facts and marks each one that the
given knowledge about the entity supports."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Split TEXT, written about ENTITY, into atomic facts: short sentences that each make one claim. "
    "For each fact, say whether KNOWLEDGE (a list of [relation, value] facts about ENTITY) supports it. "
    'Reply with JSON only, in this form: {"facts": [{"fact": "...", "supported": true}]}'
)


@dataclass
class LLMJudge:
    base_url: str
    model: str
    api_key: str = "EMPTY"
    timeout: float = 60.0
    client: object = field(init=False, repr=False)

    def __post_init__(self):
        from openai import OpenAI

        self.client = OpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout, max_retries=3)

    def judge(self, entity: str, text: str, knowledge: list[tuple[str, str]]) -> list[tuple[str, bool]] | None:
        """(fact, supported) for each atomic fact of ``text``; None when the reply is not the JSON asked for."""
        question = json.dumps({"ENTITY": entity, "TEXT": text, "KNOWLEDGE": [list(k) for k in knowledge]}, ensure_ascii=False)
        reply = self.client.chat.completions.create(
            model=self.model, temperature=0,
            messages=[{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": question}])
        content = (reply.choices[0].message.content or "").strip().removeprefix("```json").removesuffix("```")
        try:
            return [(str(f["fact"]), bool(f["supported"])) for f in json.loads(content)["facts"]]
        except (ValueError, KeyError, TypeError) as e:
            log.warning("the judge's reply about %r is not the JSON asked for (%s); left unjudged", entity, e)
            return None
