"""The LLM judge for real-data factual precision, through the real openai client and a local HTTP server
standing in for the paid LLM."""

import json
import time

from conftest import run_cli
from live_server import serving
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from tiny_lmlm import make_tiny_lmlm

from lmlm.evaluate.judge import LLMJudge


def judge_app() -> Starlette:
    """Splits TEXT at full stops; a fact is supported when it contains one of KNOWLEDGE's values.
    For an entity named "Garbled" it answers with prose instead of JSON, as LLMs sometimes do."""

    async def chat(request: Request):
        body = await request.json()
        question = json.loads(body["messages"][-1]["content"])
        values = [value for _, value in question["KNOWLEDGE"]]
        facts = [{"fact": s.strip() + ".", "supported": any(v in s for v in values)} for s in question["TEXT"].split(".") if s.strip()]
        content = "Sure! Here are the facts." if question["ENTITY"] == "Garbled" else "```json\n" + json.dumps({"facts": facts}) + "\n```"
        return JSONResponse({"id": "x", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
                             "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
                             "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}})

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def test_judge_splits_and_checks_facts_and_flags_prose_replies():
    with serving(judge_app()) as url:
        judge = LLMJudge(base_url=f"{url}/v1", model="judge")
        text = "Ko Itakura was born in Yokohama. He plays for Arsenal. He is a defender."
        knowledge = [("Birthplace", "Yokohama"), ("Position", "defender"), ("Club", "Borussia Mönchengladbach")]
        assert judge.judge("Ko Itakura", text, knowledge) == [
            ("Ko Itakura was born in Yokohama.", True), ("He plays for Arsenal.", False), ("He is a defender.", True)]
        assert judge.judge("Garbled", text, knowledge) is None


def test_eval_factuality_with_a_judge(tmp_path):
    """`lmlm eval factuality --judge-url`: every bio is judged, the KB's facts are the knowledge where a
    prompt brings none, and a prose reply is counted, not fatal."""
    model, kb = make_tiny_lmlm(tmp_path, people=20, steps=40)
    people = [json.loads(line) for line in (tmp_path / "world" / "people.jsonl").read_text().splitlines()][:3]
    rows = [{"prompt": f"Tell me a bio of {p['name']}. {p['name']} is", "person": p["name"]} for p in people[:2]]
    rows.append({"prompt": "Tell me a bio of Garbled. Garbled is", "person": "Garbled", "facts": {"Birth City": "Nowhere"}})
    data = tmp_path / "bios.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with serving(judge_app()) as url:
        proc = run_cli("eval", "factuality", "--model", model, "--kb", kb, "--data", data, "--judge-url", f"{url}/v1", "--judge-model", "judge",
                       check=True)
    metrics = json.loads(proc.stdout.strip().splitlines()[-1])
    assert metrics["bios"] == 3 and metrics["unjudged_bios"] == 1
    assert metrics["facts"] >= 2 and 0.0 <= metrics["factual_precision"] <= 1.0
    assert run_cli("eval", "factuality", "--model", model, "--data", data, "--judge-url", url).returncode != 0  # no --judge-model
