"""The HTTP API against a live server on 127.0.0.1: httpx, and the real openai client for completions."""

import asyncio
import contextlib
import json
import sqlite3

import httpx
import openai
import pytest
from live_server import serving, tiny_lmlm_copy

from lmlm.engine import LMLM
from lmlm.kb import SqliteKB
from lmlm.serve import Batcher, GenerateRequest, ServeConfig, create_app
from lmlm.serve.generation import Generation

PROMPTS = ["Amara Lindworth was born in", "Juno Yarnlowe was born in", "Juno Yarnlowe holds", "Amara Lindworth holds"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_lmlm_copy(tmp_path_factory)


@pytest.fixture(scope="module")
def lmlm(tiny):
    model, kb = tiny
    return LMLM.from_pretrained(model, kb=SqliteKB(kb))


@pytest.fixture(scope="module")
def url(lmlm):
    with serving(create_app(lmlm, ServeConfig(max_new_tokens=64, max_batch=16, max_prompt_chars=300))) as base:
        yield base


def test_generate_returns_text_raw_lookups_and_fact_segments(url, lmlm):
    one = httpx.post(f"{url}/v1/generate", json={"prompt": PROMPTS[1], "max_new_tokens": 24}).json()
    direct = lmlm.generate(PROMPTS[1], max_new_tokens=24)
    assert (one["text"], one["raw"]) == (direct.text, direct.raw)
    assert one["lookups"] and one["lookups"][0]["entity"] == "Juno Yarnlowe" and one["lookups"][0]["tier"] == "exact"
    facts = [s for s in one["segments"] if "fact" in s]
    assert facts and one["lookups"][facts[0]["fact"]]["value"] == facts[0]["text"]  # the model copied the value
    assert "".join(s["text"] for s in one["segments"]).strip() == one["text"].strip()
    # a value the model did not copy is still shown as a fact, with no text of its own
    other = httpx.post(f"{url}/v1/generate", json={"prompt": PROMPTS[0], "max_new_tokens": 24}).json()
    assert all(s["text"] in ("", other["lookups"][s["fact"]]["value"]) for s in other["segments"] if "fact" in s)
    many = httpx.post(f"{url}/v1/generate", json={"prompt": PROMPTS, "max_new_tokens": 16}).json()["results"]
    assert [r["text"] for r in many] == [r.text for r in lmlm.generate(PROMPTS, max_new_tokens=16)]


def test_a_servers_generation_default_applies_only_where_a_request_leaves_the_option_out(lmlm):
    gen = Generation(lmlm, Batcher(lmlm, 4, 1.0), ServeConfig(), "tiny", {"constrain_lookups": "entity_relation"})
    left_out, _ = gen.plan(GenerateRequest(prompt="Ada"), ["Ada"])
    chosen, _ = gen.plan(GenerateRequest(prompt="Ada", constrain_lookups="off"), ["Ada"])
    assert (left_out.constrain_lookups, chosen.constrain_lookups) == ("entity_relation", "off")


def test_concurrent_requests_share_engine_batches_and_get_their_own_answers(url, lmlm):
    prompts = [PROMPTS[i % 4] + " " * (i // 4) for i in range(16)]
    expected = [r.text for r in lmlm.generate(prompts, max_new_tokens=12, batch_size=1)]
    before = httpx.get(f"{url}/health").json()["engine_batches"]

    async def send_all():
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            replies = await asyncio.gather(*(client.post("/v1/generate", json={"prompt": p, "max_new_tokens": 12}) for p in prompts))
        return [r.json()["text"] for r in replies]

    assert asyncio.run(send_all()) == expected
    batches = httpx.get(f"{url}/health").json()["engine_batches"] - before
    assert batches < len(prompts) // 2, batches


def test_openai_client_completions_plain_and_streaming(url, lmlm):
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    direct = lmlm.generate(PROMPTS[1], max_new_tokens=20)
    completion = client.completions.create(model="tiny", prompt=PROMPTS[1], max_tokens=20)
    choice = completion.choices[0]
    assert choice.text == direct.text and choice.finish_reason == ("length" if len(direct.token_ids) == 20 else "stop")
    assert choice.model_extra["lookups"][0]["value"] == direct.lookups[0].value
    assert completion.usage.completion_tokens == len(direct.token_ids)

    chunks = list(client.completions.create(model="tiny", prompt=PROMPTS[1], max_tokens=20, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == direct.text
    assert len(chunks) > 2  # it streamed, not one blob
    assert chunks[-1].choices[0].model_extra["lookups"] == choice.model_extra["lookups"]

    both = client.completions.create(model="tiny", prompt=PROMPTS[:2], max_tokens=20)
    assert [c.index for c in both.choices] == [0, 1] and both.choices[1].text == direct.text


def test_kb_endpoints_and_an_edit_seen_by_the_next_generation(url):
    facts = httpx.get(f"{url}/v1/kb/entity/Juno Yarnlowe").json()["facts"]
    city = next(f for f in facts if f["relation"] == "Birth City")
    assert any(r["id"] == city["id"] for r in httpx.get(f"{url}/v1/kb/search", params={"q": "juno yarn"}).json()["results"])
    before = httpx.post(f"{url}/v1/generate", json={"prompt": PROMPTS[1], "max_new_tokens": 24}).json()
    assert before["lookups"][0]["value"] == city["value"]

    edited = httpx.put(f"{url}/v1/kb/triplets/{city['id']}", json={"value": "Port Zembla"})
    assert edited.status_code == 200 and edited.json()["value"] == "Port Zembla"
    after = httpx.post(f"{url}/v1/generate", json={"prompt": PROMPTS[1], "max_new_tokens": 24}).json()
    assert after["lookups"][0]["value"] == "Port Zembla" and after["lookups"][0]["triplet_id"] == city["id"]

    added = httpx.post(f"{url}/v1/kb/triplets", json={"entity": "Juno Yarnlowe", "relation": "Pet", "value": "a heron"})
    assert added.status_code == 201
    assert httpx.delete(f"{url}/v1/kb/triplets/{added.json()['id']}").json()["value"] is None
    live = httpx.get(f"{url}/v1/kb/stats").json()["triplets"]
    forgot = httpx.post(f"{url}/v1/kb/forget", json={"entity": "Juno Yarnlowe"}).json()["forgotten"]
    assert forgot == len(facts) and httpx.get(f"{url}/v1/kb/stats").json()["triplets"] == live - forgot
    gone = httpx.post(f"{url}/v1/generate", json={"prompt": PROMPTS[1], "max_new_tokens": 16}).json()
    assert all(p["tier"] == "none" and p["triplet_id"] is None for p in gone["lookups"] if p["entity"] == "Juno Yarnlowe")


@pytest.mark.parametrize("method, path, body, status, message", [
    ("POST", "/v1/generate", b'{"prompt": "Amara', 400, "malformed JSON"),
    ("POST", "/v1/generate", {"prompt": 42}, 400, "prompt"),
    ("POST", "/v1/generate", {"prompt": "x", "max_new_tokens": "many"}, 400, "max_new_tokens"),
    ("POST", "/v1/generate", {"prompt": "x" * 301}, 400, "301 characters exceed the server's cap of 300"),
    ("POST", "/v1/generate", {"prompt": "x", "max_new_tokens": 65}, 400, "exceeds the server's cap of 64"),
    ("POST", "/v1/generate", {"prompt": ["x"] * 17}, 400, "17 prompts exceed"),
    ("POST", "/v1/generate", {"prompt": []}, 400, "at least one prompt"),
    ("POST", "/v1/generate", {"prompt": "x", "temprature": 0.5}, 400, "temprature"),
    ("PUT", "/v1/kb/triplets/999999", {"value": "v"}, 404, "no triplet with id 999999"),
    ("DELETE", "/v1/kb/triplets/999999", None, 404, "no triplet with id 999999"),
    ("PUT", "/v1/kb/triplets/abc", {"value": "v"}, 400, "triplet_id"),
    ("POST", "/v1/kb/forget", {"entity": "Nobody Atall"}, 404, "no entity named"),
    ("POST", "/v1/kb/triplets", {"entity": "", "relation": "r", "value": "v"}, 400, "entity"),
    ("POST", "/v1/completions", {"prompt": "x", "n": 2}, 400, "n must be 1"),
])
def test_bad_requests_get_a_clear_4xx_and_the_server_stays_up(url, method, path, body, status, message):
    raw = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    reply = httpx.request(method, url + path, content=raw, headers={"content-type": "application/json"})
    assert reply.status_code == status, reply.text
    assert message in reply.json()["error"]["message"]
    assert httpx.get(f"{url}/health").json()["status"] == "ok"


def test_api_key_and_read_only(lmlm):
    with serving(create_app(lmlm, ServeConfig(api_key="s3cret"))) as base:
        assert httpx.post(f"{base}/v1/generate", json={"prompt": PROMPTS[0], "max_new_tokens": 4}).status_code == 200
        refused = httpx.post(f"{base}/v1/kb/triplets", json={"entity": "A B", "relation": "r", "value": "v"})
        assert refused.status_code == 401 and "bearer token" in refused.json()["error"]["message"]
        wrong = httpx.post(f"{base}/v1/kb/triplets", json={"entity": "A B", "relation": "r", "value": "v"},
                           headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = httpx.post(f"{base}/v1/kb/triplets", json={"entity": "A B", "relation": "r", "value": "v"},
                        headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 201
    with serving(create_app(lmlm, ServeConfig(api_key="s3cret", protect="all"))) as base:
        assert httpx.post(f"{base}/v1/generate", json={"prompt": PROMPTS[0]}).status_code == 401
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="s3cret")
        assert client.completions.create(model="tiny", prompt=PROMPTS[0], max_tokens=4).choices
    with serving(create_app(lmlm, ServeConfig(read_only=True))) as base:
        reply = httpx.delete(f"{base}/v1/kb/triplets/1")
        assert reply.status_code == 403 and "read-only" in reply.json()["error"]["message"]
        assert httpx.get(f"{base}/v1/kb/stats").status_code == 200


def send_together(base: str, bodies: list[dict], path: str = "/v1/generate") -> list[httpx.Response]:
    async def send_all():
        async with httpx.AsyncClient(base_url=base, timeout=120) as client:
            return await asyncio.gather(*(client.post(path, json=body) for body in bodies))

    return asyncio.run(send_all())


def test_an_engine_batch_never_holds_more_rows_than_max_batch(lmlm):
    # the long window gathers both requests; together their 6 prompts would pass the cap of 4
    with serving(create_app(lmlm, ServeConfig(max_batch=4, window_ms=1000, max_new_tokens=8))) as base:
        replies = send_together(base, [{"prompt": PROMPTS[:3], "max_new_tokens": 4}] * 2)
        assert [r.status_code for r in replies] == [200, 200]
        assert httpx.get(f"{base}/health").json()["engine_batches"] == 2


def test_a_seeded_sampled_request_gets_the_same_text_alone_or_in_company(lmlm):
    seeded = {"prompt": PROMPTS[0], "max_new_tokens": 24, "do_sample": True, "temperature": 1.5, "seed": 7}
    with serving(create_app(lmlm, ServeConfig(window_ms=500, max_new_tokens=64))) as base:
        alone = httpx.post(f"{base}/v1/generate", json=seeded, timeout=120).json()["text"]
        # the same options and seed for other prompts: before, one batch and one generator for all four
        company = [{**seeded, "prompt": p} for p in PROMPTS[1:3]] + [seeded] + [{**seeded, "prompt": PROMPTS[3]}]
        replies = send_together(base, company)
        assert replies[2].json()["text"] == alone
        assert httpx.post(f"{base}/v1/generate", json=seeded, timeout=120).json()["text"] == alone


def test_streaming_decodes_a_few_tokens_per_token_not_the_whole_text(url, lmlm, monkeypatch):
    tokenizer, clean_decodes = lmlm.engine.tokenizer, []
    real_decode = tokenizer.decode

    def counting_decode(ids, *args, **kwargs):
        if kwargs.get("skip_special_tokens"):  # the clean text; the raw text is decoded once, at the end
            clean_decodes.append(len(ids))
        return real_decode(ids, *args, **kwargs)

    monkeypatch.setattr(tokenizer, "decode", counting_decode)
    body = {"prompt": PROMPTS[0], "max_tokens": 64, "stream": True}
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=120) as reply:
        events = [line[len("data: "):] for line in reply.iter_lines() if line.startswith("data: ")]
    monkeypatch.undo()
    text = "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1])
    result = lmlm.generate(PROMPTS[0], max_new_tokens=64)
    assert events[-1] == "[DONE]" and text == result.text and len(text) > 40
    # the result's clean text is decoded whole once, and up to each call once (where the call stood in it)
    streaming = sorted(clean_decodes)[: -1 - len(result.lookups)]
    assert len(streaming) > 20 and max(streaming) <= 8, sorted(clean_decodes)


def test_a_stream_that_fails_ends_with_an_error_event_and_done(tmp_path_factory):
    model, kb = tiny_lmlm_copy(tmp_path_factory)
    with serving(create_app(LMLM.from_pretrained(model, kb=SqliteKB(kb)))) as base:
        with contextlib.closing(sqlite3.connect(kb)) as other:  # the facts table goes away under the running server
            other.execute("ALTER TABLE triplets RENAME TO triplets_gone")
        body = {"prompt": PROMPTS[1], "max_tokens": 24, "stream": True}
        with httpx.stream("POST", f"{base}/v1/completions", json=body, timeout=120) as reply:
            status = reply.status_code
            events = [line[len("data: "):] for line in reply.iter_lines() if line.startswith("data: ")]
        assert httpx.get(f"{base}/health").json()["status"] == "ok"
    assert status == 200 and events[-1] == "[DONE]", events
    error = json.loads(events[-2])["error"]
    assert error["code"] == 500 and "internal error (OperationalError)" in error["message"]


def test_an_ambiguous_edit_is_a_409_with_the_candidates(tmp_path_factory):
    model, kb = tiny_lmlm_copy(tmp_path_factory)
    with serving(create_app(LMLM.from_pretrained(model, kb=SqliteKB(kb)))) as base:
        for name in ("John Adam Smith", "John Paul Smith"):
            assert httpx.post(f"{base}/v1/kb/triplets", json={"entity": name, "relation": "Pet", "value": "a heron"}).status_code == 201
        reply = httpx.post(f"{base}/v1/kb/forget", json={"entity": "John Smith"})
        kept = [httpx.get(f"{base}/v1/kb/entity/{name}").json() for name in ("John Adam Smith", "John Paul Smith")]
    assert reply.status_code == 409, reply.text
    error = reply.json()["error"]
    assert error["code"] == 409 and error["candidates"] == ["John Adam Smith", "John Paul Smith"]
    assert "'John Smith' fits 2 entities" in error["message"]
    assert all(len(facts["facts"]) == 1 for facts in kept), kept  # nothing was forgotten


def test_a_write_while_another_process_holds_the_kb_is_a_503_with_retry_after(tmp_path_factory):
    model, kb = tiny_lmlm_copy(tmp_path_factory)
    fact = {"entity": "Juno Yarnlowe", "relation": "Pet", "value": "a heron"}
    with serving(create_app(LMLM.from_pretrained(model, kb=SqliteKB(kb, busy_timeout=1)))) as base:
        with contextlib.closing(sqlite3.connect(kb, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # another writer holds the file's write lock
            busy = httpx.post(f"{base}/v1/kb/triplets", json=fact, timeout=120)
            other.execute("ROLLBACK")
        assert busy.status_code == 503, busy.text
        assert int(busy.headers["Retry-After"]) >= 1
        assert set(busy.json()) == {"error"} and busy.json()["error"]["code"] == 503
        assert httpx.post(f"{base}/v1/kb/triplets", json=fact).status_code == 201  # once the writer is done, the same write goes through
