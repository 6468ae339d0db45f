"""Bad input to every endpoint of a live server: each gets a 4xx in the one error shape, never a 500 or a
traceback, and the server stays up. Also the Host check (DNS rebinding) and the body cap."""

import json
import logging

import httpx
import pytest
from live_server import serving, tiny_lmlm_copy

from lmlm.engine import LMLM
from lmlm.kb import SqliteKB
from lmlm.serve import ServeConfig, create_app

CONFIG = ServeConfig(max_new_tokens=64, max_batch=4, max_prompt_chars=300)
HUGE = 2**70
SAMPLED = {"prompt": "Amara Lindworth was born in", "max_new_tokens": 8, "do_sample": True}


@pytest.fixture(scope="module")
def lmlm(tmp_path_factory):
    model, kb = tiny_lmlm_copy(tmp_path_factory)
    return LMLM.from_pretrained(model, kb=SqliteKB(kb))


@pytest.fixture(scope="module")
def url(lmlm):
    with serving(create_app(lmlm, CONFIG)) as base:
        added = httpx.post(f"{base}/v1/kb/triplets", json={"entity": "AC/DC Band", "relation": "Genre", "value": "hard rock"})
        assert added.status_code == 201
        yield base


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def errors_logged():
    """ERROR records of uvicorn (which logs an app's traceback there) and of lmlm, during one test."""
    handler, loggers = Collect(), [logging.getLogger("uvicorn"), logging.getLogger("lmlm")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler.records
    for logger in loggers:
        logger.removeHandler(handler)


def raw(body) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()  # json.dumps writes "\ud800" as the escape


CASES = [
    # lone surrogates, in every text field
    ("POST", "/v1/kb/triplets", {"entity": "Ada\ud800", "relation": "r", "value": "v"}, 400, "entity: has a lone surrogate at character 3"),
    ("POST", "/v1/kb/triplets", {"entity": "Ada", "relation": "\udfff", "value": "v"}, 400, "relation: has a lone surrogate"),
    ("POST", "/v1/kb/triplets", {"entity": "Ada", "relation": "r", "value": "\ud800"}, 400, "value: has a lone surrogate"),
    ("PUT", "/v1/kb/triplets/1", {"value": "Port \ud800"}, 400, "value: has a lone surrogate at character 5"),
    ("POST", "/v1/kb/forget", {"entity": "\ud800"}, 400, "entity: has a lone surrogate"),
    ("POST", "/v1/generate", {"prompt": "Ada\ud800"}, 400, "prompt: has a lone surrogate"),
    ("POST", "/v1/generate", {"prompt": ["Ada was", "Ada\udc00"]}, 400, "prompt: item 1 has a lone surrogate"),
    ("POST", "/v1/completions", {"prompt": "Ada\ud800"}, 400, "prompt: has a lone surrogate"),
    ("POST", "/v1/completions", {"prompt": "Ada", "model": "\ud800"}, 400, "model: has a lone surrogate"),
    # integers past any sane range (and past SQLite's and torch's int64)
    ("PUT", "/v1/kb/triplets/9223372036854775808", {"value": "v"}, 404, "no triplet with id 9223372036854775808"),
    ("DELETE", "/v1/kb/triplets/9223372036854775808", None, 404, "no triplet with id 9223372036854775808"),
    ("DELETE", "/v1/kb/triplets/-9223372036854775809", None, 404, "no triplet with id -9223372036854775809"),
    ("POST", "/v1/generate", {**SAMPLED, "seed": HUGE}, 400, "seed: Input should be less than or equal to 9223372036854775807"),
    ("POST", "/v1/generate", {**SAMPLED, "seed": -1}, 400, "seed: Input should be greater than or equal to 0"),
    ("POST", "/v1/generate", {"prompt": "Ada", "max_lookups": HUGE}, 400, "max_lookups: Input should be less than or equal to 1000"),
    ("POST", "/v1/generate", {"prompt": "Ada", "top_k": HUGE}, 400, "top_k: Input should be less than or equal to"),
    ("POST", "/v1/generate", {"prompt": "Ada", "max_new_tokens": HUGE}, 400, "max_new_tokens: Input should be less than or equal to"),
    ("POST", "/v1/completions", {"prompt": "Ada", "temperature": 1, "seed": HUGE, "stream": True}, 400, "seed: Input should be less"),
    ("POST", "/v1/completions", {"prompt": "Ada", "max_tokens": HUGE}, 400, "max_tokens: Input should be less than or equal to"),
    ("POST", "/v1/completions", {"prompt": "Ada", "n": HUGE}, 400, "n: Input should be less than or equal to"),
    ("GET", f"/v1/kb/search?q=Ada&limit={HUGE}", None, 400, "limit: Input should be less than or equal to 200"),
    # non-finite and extreme floats
    ("POST", "/v1/generate", {**SAMPLED, "repetition_penalty": 1e-300}, 400, "repetition_penalty: Input should be greater than or equal"),
    ("POST", "/v1/generate", {**SAMPLED, "repetition_penalty": 6}, 400, "repetition_penalty: Input should be less than or equal to 5"),
    ("POST", "/v1/generate", b'{"prompt": "Ada", "do_sample": true, "temperature": 1e999}', 400, "temperature: Input should be a finite"),
    ("POST", "/v1/generate", b'{"prompt": "Ada", "do_sample": true, "temperature": Infinity}', 400, "temperature: Input should be a finite"),
    ("POST", "/v1/generate", b'{"prompt": "Ada", "do_sample": true, "top_p": NaN}', 400, "top_p: Input should be a finite number"),
    ("POST", "/v1/generate", {**SAMPLED, "temperature": 2.5}, 400, "temperature: Input should be less than or equal to 2"),
    ("POST", "/v1/completions", b'{"prompt": "Ada", "temperature": -Infinity}', 400, "temperature: Input should be a finite number"),
    ("POST", "/v1/completions", {"prompt": "Ada", "temperature": 3}, 400, "temperature: Input should be less than or equal to 2"),
    # bodies that are not UTF-8, or not JSON
    ("POST", "/v1/generate", b'{"prompt": "Ada \xff\xfe"}', 400, "the body is not UTF-8"),
    ("POST", "/v1/kb/triplets", b'{"entity": "\xc3", "relation": "r", "value": "v"}', 400, "the body is not UTF-8"),
    ("POST", "/v1/completions", b"\x80", 400, "the body is not UTF-8"),
    ("POST", "/v1/kb/forget", b'{"entity": ', 400, "malformed JSON"),
    # wrong methods, unknown paths
    ("GET", "/v1/generate", None, 405, "GET is not allowed on /v1/generate (allowed: POST)"),
    ("DELETE", "/v1/kb/stats", None, 405, "DELETE is not allowed on /v1/kb/stats"),
    ("POST", "/v1/kb/triplets/1", {"value": "v"}, 405, "POST is not allowed on /v1/kb/triplets/1"),
    ("POST", "/health", None, 405, "POST is not allowed on /health"),
    ("GET", "/v1/nowhere", None, 404, "no such endpoint: GET /v1/nowhere"),
    ("GET", "/static/nowhere.js", None, 404, "no such endpoint: GET /static/nowhere.js"),
    # names with a slash
    ("GET", "/v1/kb/entity/Nobody%2FAtall", None, 404, "no entity named 'Nobody/Atall'"),
]


@pytest.mark.parametrize("method, path, body, status, message", CASES)
def test_bad_input_gets_a_4xx_in_the_one_error_shape(url, errors_logged, method, path, body, status, message):
    reply = httpx.request(method, url + path, content=None if body is None else raw(body),
                          headers={"content-type": "application/json"}, timeout=120)
    assert reply.status_code == status, reply.text
    assert reply.json() == {"error": {"message": reply.json()["error"]["message"], "code": status}}
    assert message in reply.json()["error"]["message"]
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    assert not errors_logged, [r.getMessage() for r in errors_logged]


@pytest.mark.parametrize("options", [
    {"repetition_penalty": 0.5}, {"repetition_penalty": 5}, {"temperature": 2}, {"temperature": 1e-300},
    {"top_p": 1e-300}, {"seed": 2**63 - 1}, {"top_k": 1_000_000}, {"max_lookups": 1000},
])
def test_sampling_values_at_the_edges_of_their_ranges_generate(url, errors_logged, options):
    reply = httpx.post(f"{url}/v1/generate", json={**SAMPLED, **options}, timeout=120)
    assert reply.status_code == 200, reply.text
    assert reply.json()["raw"] and not errors_logged  # it generated (the text may be all lookup call)


def test_an_entity_whose_name_holds_a_slash_can_be_fetched(url):
    reply = httpx.get(f"{url}/v1/kb/entity/AC%2FDC%20Band")
    assert reply.status_code == 200, reply.text
    assert [(f["relation"], f["value"]) for f in reply.json()["facts"]] == [("Genre", "hard rock")]


def test_an_oversized_body_is_a_413_whether_its_length_is_declared_or_not(url, errors_logged):
    cap = CONFIG.max_body_bytes
    body = json.dumps({"prompt": "x" * cap}).encode()
    declared = httpx.post(f"{url}/v1/generate", content=body, headers={"content-type": "application/json"})
    chunked = httpx.post(f"{url}/v1/generate", content=iter([body[i : i + 8192] for i in range(0, len(body), 8192)]),
                         headers={"content-type": "application/json"})
    message = f"the request body exceeds the server's cap of {cap} bytes"
    for reply in (declared, chunked):
        assert reply.status_code == 413 and reply.json() == {"error": {"message": message, "code": 413}}
    assert "transfer-encoding" in chunked.request.headers  # really sent without a declared length
    fits = {"prompt": ["x" * CONFIG.max_prompt_chars] * CONFIG.max_batch, "max_new_tokens": 1}
    assert httpx.post(f"{url}/v1/generate", json=fits, timeout=120).status_code == 200
    assert not errors_logged


def test_without_a_key_on_loopback_only_local_host_names_are_served(url, lmlm):
    port = url.rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
        assert httpx.get(f"{url}/health", headers={"Host": host}).status_code == 200, host
    rebound = httpx.get(f"{url}/health", headers={"Host": f"attacker.example:{port}"})
    assert rebound.status_code == 421
    assert rebound.json()["error"]["message"].startswith(f"Host 'attacker.example:{port}' is not served")
    forget = httpx.post(f"{url}/v1/kb/forget", json={"entity": "AC/DC Band"}, headers={"Host": "127.0.0.1.attacker.example"})
    assert forget.status_code == 421
    # with a key, or bound beyond loopback (the operator chose who may reach it), any Host is served
    for config in (ServeConfig(api_key="s3cret"), ServeConfig(bind_host="0.0.0.0")):
        with serving(create_app(lmlm, config)) as base:
            assert httpx.get(f"{base}/health", headers={"Host": "attacker.example"}).status_code == 200
