"""LLM annotation against a real local HTTP server and the real openai client, with injected failures."""

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from conftest import REPO
from fake_openai import FAULTS, REPLY_FAULTS, make_app
from live_server import free_port, serving

from lmlm.annotate.llm import OpenAIBackend
from lmlm.annotate.run import annotate_llm
from lmlm.annotate.validate import check_annotation
from lmlm.corpus import read_corpus
from lmlm.errors import LmlmError


@pytest.fixture(scope="module")
def passages(shared):
    """Real GPT-4o annotations that pass validation untouched, and a plain corpus of their texts."""
    examples = read_corpus(shared / "squad-train1k_chatgpt_gpt4o-v7.1_cleaned.json").examples
    clean = [e for e in examples if (v := check_annotation(e["text"], e["annotated_text"])).ok and not v.repairs
             and "[dblookup(" in e["annotated_text"]]
    return clean[:60]


@pytest.fixture
def corpus(tmp_path, passages):
    path = tmp_path / "plain.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i}", "text": e["text"]}) + "\n" for i, e in enumerate(passages)))
    return path


def answers(passages) -> dict[str, str]:
    return {e["text"]: e["annotated_text"] for e in passages}


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def expected_counts(n: int) -> dict:
    faults = Counter(FAULTS[i % len(FAULTS)] for i in range(n))
    return {"repaired": faults["broken"] + faults["repeated"], "retried": faults["changed"] + faults["flaky"] + faults["empty"],
            "rejected": {"changed_text": faults["changed"], "empty": faults["empty"]},
            "request_retries": faults["rate_limit"] + faults["server_error"] + faults["timeout"]}


def test_every_id_ends_as_one_line_with_the_injected_counts(tmp_path, corpus, passages):
    out = tmp_path / "out.jsonl"
    with serving(make_app(answers(passages))) as url:
        backend = OpenAIBackend("fake-gpt", base_url=url + "/v1", concurrency=8, timeout=1.0, backoff=0.05)
        summary = annotate_llm(corpus, out, backend)
    results = lines(out)
    assert sorted(r["id"] for r in results) == sorted(f"p{i}" for i in range(len(passages)))
    expected = expected_counts(len(passages))
    assert {k: summary[k] for k in expected} == expected
    assert summary["annotated"] + sum(summary["rejected"].values()) == len(passages)
    by_id = {r["id"]: r for r in results}
    for i, e in enumerate(passages):
        fault, result = FAULTS[i % len(FAULTS)], by_id[f"p{i}"]
        if fault in ("changed", "empty"):
            assert result["rejected"] in ("changed_text", "empty") and "annotated_text" not in result
        else:  # repaired or retried answers come back as the clean annotation
            assert result["annotated_text"] == e["annotated_text"], fault
            assert result["prompt_id"] and result["annotator"] == "fake-gpt"
    # downstream readers keep the rejected lines out of the corpus
    read = read_corpus(out)
    assert len(read.examples) == summary["annotated"] and len(read.rejected) == sum(expected["rejected"].values())


def test_a_killed_run_resumes_to_the_same_final_set(tmp_path, corpus, passages):
    app = make_app(answers(passages))
    full, part = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    with serving(app) as url:
        annotate_llm(corpus, full, OpenAIBackend("fake-gpt", base_url=url + "/v1", concurrency=4, timeout=1.0, backoff=0.05))
        app.state.attempts.clear()  # the resumed run meets the same first-request failures
        cmd = [sys.executable, "-m", "lmlm", "annotate", str(corpus), "--backend", "openai", "--model", "fake-gpt",
               "--base-url", url + "/v1", "--concurrency", "2", "--timeout", "1", "--out", str(part)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
        deadline = time.time() + 60
        while (not part.exists() or len(part.read_text().splitlines()) < len(passages) // 3) and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        halfway = len(lines(part))
        assert 0 < halfway < len(passages)
        refused = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        assert refused.returncode == 2 and "--resume" in refused.stderr
        done = subprocess.run(cmd + ["--resume", "--json"], capture_output=True, text=True, cwd=REPO)
        assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["already_done"] == halfway
    key = lambda r: (r["id"], r.get("annotated_text"), r.get("rejected"))  # noqa: E731
    assert sorted(map(key, lines(part))) == sorted(map(key, lines(full)))
    assert len(lines(part)) == len(passages)


def test_the_cache_answers_a_second_run_without_requests(tmp_path, corpus, passages):
    app = make_app(answers(passages), faults=False)
    with serving(app) as url:
        backend = OpenAIBackend("fake-gpt", base_url=url + "/v1", concurrency=8, timeout=5.0)
        cache = tmp_path / "cache.sqlite"
        annotate_llm(corpus, tmp_path / "a.jsonl", backend, cache=cache)
        requests = sum(app.state.attempts.values())
        summary = annotate_llm(corpus, tmp_path / "b.jsonl", backend, cache=cache)
    assert requests == len(passages) and sum(app.state.attempts.values()) == requests
    assert summary["from_cache"] == len(passages) and summary["annotated"] == len(passages)


def test_a_refused_key_stops_the_run_with_a_clear_error(tmp_path, corpus):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def refuse(request):
        return JSONResponse({"error": {"message": "invalid api key"}}, status_code=401)

    app = Starlette(routes=[Route("/v1/chat/completions", refuse, methods=["POST"])])
    with serving(app) as url:
        proc = subprocess.run([sys.executable, "-m", "lmlm", "annotate", str(corpus), "--backend", "openai", "--model", "m",
                               "--base-url", url + "/v1", "--out", str(tmp_path / "o.jsonl")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and "refused" in proc.stderr and "invalid api key" in proc.stderr


def annotate_cli(corpus, out, url, *extra, timeout: float = 90) -> subprocess.CompletedProcess:
    """The CLI against ``url``; a hang fails the test through ``timeout`` instead of hanging it."""
    cmd = [sys.executable, "-m", "lmlm", "annotate", str(corpus), "--backend", "openai", "--model", "fake-gpt",
           "--base-url", url + "/v1", "--timeout", "2", "--out", str(out), "--json", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=timeout)


@pytest.fixture
def three(tmp_path, passages):
    path = tmp_path / "three.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i}", "text": e["text"]}) + "\n" for i, e in enumerate(passages[:3])))
    return path


def within(seconds: float, run, *args, **kwargs):
    """``run``'s result, or its exception; a hang fails the test after ``seconds`` instead of hanging it."""
    ended: list = []

    def work():
        try:
            ended.append((run(*args, **kwargs), None))
        except Exception as e:  # handed to the test's thread
            ended.append((None, e))

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still running after {seconds} s"
    result, error = ended[0]
    if error is not None:
        raise error
    return result


def fast_backend(url: str, max_retries: int = 2, **kwargs) -> OpenAIBackend:
    return OpenAIBackend("fake-gpt", base_url=url + "/v1", concurrency=2, timeout=2.0, max_retries=max_retries,
                         backoff=0.02, **kwargs)


@pytest.mark.parametrize("fault", REPLY_FAULTS)
def test_a_broken_first_reply_is_retried_and_the_run_ends_with_its_summary(tmp_path, passages, three, fault):
    out = tmp_path / "out.jsonl"
    with serving(make_app(answers(passages[:3]), reply_fault=fault, fault_times=1)) as url:
        summary = within(30, annotate_llm, three, out, fast_backend(url))
    assert summary["annotated"] == 3 and summary["request_retries"] == 3 and summary["rejected"] == {}
    assert sorted(r["annotated_text"] for r in lines(out)) == sorted(e["annotated_text"] for e in passages[:3])


@pytest.mark.parametrize("fault", REPLY_FAULTS)
def test_a_reply_broken_every_time_is_rejected_with_its_reason(tmp_path, passages, three, fault):
    out = tmp_path / "out.jsonl"
    with serving(make_app(answers(passages[:3]), reply_fault=fault, fault_times=100)) as url:
        summary = within(30, annotate_llm, three, out, fast_backend(url, max_retries=1))
    assert summary["annotated"] == 0 and summary["rejected"] == {"request_failed": 3}
    assert sorted(r["id"] for r in lines(out)) == ["p0", "p1", "p2"]
    assert all(r["rejected"].startswith("request_failed: ") for r in lines(out))


def test_the_cli_ends_with_its_summary_after_a_truncated_reply(tmp_path, passages, three):
    out = tmp_path / "out.jsonl"
    with serving(make_app(answers(passages[:3]), reply_fault="truncated_json", fault_times=1)) as url:
        proc = annotate_cli(three, out, url, "--max-retries", "2")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["annotated"] == 3


def refusing_app(status: int):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def refuse(request):
        return JSONResponse({"error": {"message": f"refused with {status}"}}, status_code=status)

    return Starlette(routes=[Route("/v1/chat/completions", refuse, methods=["POST"])])


def test_an_unreachable_endpoint_stops_the_run_at_once_with_one_line(tmp_path, three):
    out = tmp_path / "out.jsonl"
    proc = annotate_cli(three, out, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    assert proc.returncode == 2
    messages = [line for line in proc.stderr.split("\n") if line and not line.startswith("annotating:")]  # not the bar
    assert len(messages) == 1 and messages[0].startswith("lmlm: error: cannot reach the annotation endpoint http://127.0.0.1:")
    assert not out.exists()


def test_a_dead_endpoint_trips_the_breaker_and_resume_asks_the_failed_again(tmp_path, passages, corpus):
    out = tmp_path / "out.jsonl"
    with serving(make_app(answers(passages), reply_fault="server_error", fault_times=1000)) as url:
        with pytest.raises(LmlmError, match="requests to .* all failed .*HTTP 500.*--resume"):
            within(30, annotate_llm, corpus, out, fast_backend(url, max_retries=1))
    written = lines(out) if out.exists() else []
    assert len(written) < len(passages) and all(r["rejected"].startswith("request_failed") for r in written)
    with serving(make_app(answers(passages), faults=False)) as url:
        summary = within(30, annotate_llm, corpus, out, fast_backend(url), resume=True)
    assert summary["already_done"] == 0 and summary["annotated"] == len(passages)
    assert sorted(r["id"] for r in lines(out)) == sorted(f"p{i}" for i in range(len(passages)))


def test_resume_asks_again_for_texts_whose_requests_failed(tmp_path, passages, three):
    out = tmp_path / "out.jsonl"
    with serving(make_app(answers(passages[:3]), reply_fault="server_error", fault_times=1000)) as url:
        failed = within(30, annotate_llm, three, out, fast_backend(url, max_retries=1))
    assert failed["rejected"] == {"request_failed": 3}
    with serving(make_app(answers(passages[:3]), faults=False)) as url:
        summary = within(30, annotate_llm, three, out, fast_backend(url), resume=True)
    assert summary["already_done"] == 0 and summary["annotated"] == 3
    assert sorted((r["id"], r["annotated_text"]) for r in lines(out)) == \
        sorted((f"p{i}", e["annotated_text"]) for i, e in enumerate(passages[:3]))


@pytest.mark.parametrize("status", [401, 404])
def test_a_run_refused_at_once_leaves_no_output_and_the_rerun_proceeds(tmp_path, passages, three, status):
    out = tmp_path / "out.jsonl"
    with serving(refusing_app(status)) as url:
        with pytest.raises(LmlmError, match=f"refused the run: .*refused with {status}"):
            within(30, annotate_llm, three, out, fast_backend(url))
    assert not out.exists()
    with serving(make_app(answers(passages[:3]), faults=False)) as url:
        assert within(30, annotate_llm, three, out, fast_backend(url))["annotated"] == 3
