"""Load on `lmlm serve` over loopback: 64 concurrent clients send 1,000 generate requests mixed with
100 KB edits, against the same 1,000 requests sent one at a time.

The server is the real CLI in its own process, serving a tiny LMLM trained on a synthetic world for a
few seconds (tests/tiny_lmlm.py); the load generator is aiohttp (httpx's own per-request cost caps a
single client process near 200 requests/s here, below what the server does). Each edit changes a
different fact; right after the edit's response the client sends the completion prompt for that fact,
and a lookup of it that returns anything but the new value is a stale read. At the end every edit is
checked in the KB (lost edits).

    python benchmarks/serve_load.py [--requests 1000] [--edits 100] [--clients 64] [--max-new-tokens 16]

With ``--replicas N`` (N >= 2) the KB is a PostgreSQL database (``--kb-url URL`` or ``env:NAME``; without it a
throwaway server, tests/postgres_server.py) shared by N `lmlm serve` processes, and the run is the replica
check of tests/replicas.py: every generate ends with a call, edits (updates and forgets, 200 by default) go to
the replicas in turn, and a generate sent after an edit returned that looks up a retired value is stale.

    python benchmarks/serve_load.py --replicas 2 [--kb-url env:LMLM_KB_URL] [--requests 1000] [--edits 200] [--clients 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))

from live_server import free_port, start_serve  # noqa: E402
from tiny_lmlm import make_tiny_lmlm  # noqa: E402

DEADLINE_S = 900  # the loaded run stops by itself after this
TIMEOUT = aiohttp.ClientTimeout(total=60)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def sequential(url: str, prompts: list[str], max_new_tokens: int) -> dict:
    latencies, errors = [], 0
    async with aiohttp.ClientSession(url, timeout=TIMEOUT) as client:
        start = time.perf_counter()
        for prompt in prompts:
            t = time.perf_counter()
            async with client.post("/v1/generate", json={"prompt": prompt, "max_new_tokens": max_new_tokens}) as reply:
                await reply.read()
                errors += reply.status != 200
            latencies.append(time.perf_counter() - t)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "requests_per_s": len(prompts) / seconds, "errors": errors,
            "p50_ms": 1000 * percentile(latencies, 0.5), "p99_ms": 1000 * percentile(latencies, 0.99)}


async def concurrent(url: str, prompts: list[str], edits: list[dict], clients: int, max_new_tokens: int) -> dict:
    """``clients`` workers share one queue of generate requests with an edit after every tenth."""
    jobs: asyncio.Queue = asyncio.Queue()
    every = max(1, len(prompts) // max(1, len(edits)))
    pending_edits = list(edits)
    for i, prompt in enumerate(prompts):
        jobs.put_nowait(("generate", prompt))
        if i % every == every - 1 and pending_edits:
            jobs.put_nowait(("edit", pending_edits.pop(0)))
    for edit in pending_edits:
        jobs.put_nowait(("edit", edit))
    latencies, errors = [], []
    checked = stale = 0

    async def post(client, path: str, body: dict, method: str = "POST") -> dict | None:
        async with client.request(method, path, json=body) as reply:
            data = await reply.json()
            if reply.status != 200:
                errors.append(f"{reply.status} {data}")
                return None
            return data

    async def worker(client) -> None:
        nonlocal checked, stale
        while not jobs.empty():
            kind, job = jobs.get_nowait()
            if kind == "generate":
                t = time.perf_counter()
                await post(client, "/v1/generate", {"prompt": job, "max_new_tokens": max_new_tokens})
                latencies.append(time.perf_counter() - t)
                continue
            if await post(client, f"/v1/kb/triplets/{job['id']}", {"value": job["value"]}, "PUT") is None:
                continue
            # the edit's response has arrived: a lookup of that fact from now on must see the new value
            check = await post(client, "/v1/generate", {"prompt": job["prompt"], "max_new_tokens": max_new_tokens})
            for lookup in check["lookups"] if check else []:
                if lookup["triplet_id"] == job["id"]:
                    checked += 1
                    stale += lookup["value"] != job["value"]

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(url, timeout=TIMEOUT, connector=connector) as client:
        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker(client) for _ in range(clients))), DEADLINE_S)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "requests_per_s": len(prompts) / seconds, "errors": len(errors), "error_samples": errors[:3],
            "p50_ms": 1000 * percentile(latencies, 0.5), "p99_ms": 1000 * percentile(latencies, 0.99),
            "edits": len(edits), "reads_after_edit_checked": checked, "stale_reads_after_edit": stale}


def replicated(args) -> None:
    """N replicas on one PostgreSQL KB: stale answers after forget/update returned, across replicas."""
    from lmlm.kb import open_kb
    from lmlm.kb.migrate import migrate
    from lmlm.kb.opening import resolve_kb_spec
    from replicas import kb_facts, run_load, start_replica, stop_replicas

    server = None
    if not args.kb_url:
        from postgres_server import PostgresServer

        server = PostgresServer().start()
        args.kb_url = server.new_database("serve_load")
    procs = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            model, kb = make_tiny_lmlm(Path(tmp), people=max(40, args.edits + 20))  # each edit acts on an entity of its own
            migrate(kb, args.kb_url)
            with open_kb(args.kb_url) as shared:
                facts = kb_facts(shared)
            url = resolve_kb_spec(args.kb_url)
            procs = [start_replica(model, url, free_port(), max_batch=args.clients) for _ in range(args.replicas)]
            urls = [f"http://127.0.0.1:{p.args[p.args.index('--port') + 1]}" for p in procs]
            report = run_load(urls, facts, generates=args.requests, edits=args.edits, clients=args.clients)
    finally:
        stop_replicas(procs)
        if server:
            server.stop()
    report = {"replicas": args.replicas, "clients": args.clients, "model": "tests/tiny_lmlm.py (2 layers, 96 wide)", **report}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    print(f"{report['generates']} generates and {report['edits']} edits over {args.replicas} replicas: "
          f"{report['stale']} stale answers of {report['checked']} lookups of edited facts after their edit returned; {report['errors']} errors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--edits", type=int, default=None, help="default 100; 200 with --replicas")
    parser.add_argument("--clients", type=int, default=None, help="default 64; 8 with --replicas")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--replicas", type=int, default=1, help="N >= 2: N servers sharing one PostgreSQL KB")
    parser.add_argument("--kb-url", default=None, help="with --replicas: an empty PostgreSQL database (URL or env:NAME)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    name = "serve_load.json" if args.replicas < 2 else "serve_load_replicas.json"
    args.out = args.out or REPO / "benchmarks" / "results" / name
    if args.replicas >= 2:
        args.edits, args.clients = args.edits or 200, args.clients or 8
        replicated(args)
        return
    args.edits, args.clients = args.edits or 100, args.clients or 64
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model, kb = make_tiny_lmlm(root)
        completion = [json.loads(line) for line in (root / "world" / "eval" / "completion.jsonl").read_text().splitlines()]
        prompts = [row["prompt"] for row in completion if row["split"] != "inject"]
        prompts = [prompts[i % len(prompts)] for i in range(args.requests)]
        port = free_port()
        server = start_serve(model, str(kb), port, max_batch=args.clients)
        url = f"http://127.0.0.1:{port}"
        try:
            # each edit changes a different fact, and its check asks the completion prompt for that fact
            rng = random.Random(0)
            targets = rng.sample([row for row in completion if row["split"] != "inject"], args.edits)
            edits = []
            for k, row in enumerate(targets):
                facts = httpx.get(f"{url}/v1/kb/entity/{row['person']}").json()["facts"]
                fact = next(f for f in facts if f["relation"] == row["relation"])
                edits.append({"id": fact["id"], "entity": row["person"], "prompt": row["prompt"], "value": f"Edited {k}"})
            one_at_a_time = asyncio.run(sequential(url, prompts, args.max_new_tokens))
            loaded = asyncio.run(concurrent(url, prompts, edits, args.clients, args.max_new_tokens))
            lost = sum(1 for e in edits
                       if next(f["value"] for f in httpx.get(f"{url}/v1/kb/entity/{e['entity']}").json()["facts"] if f["id"] == e["id"]) != e["value"])
            batches = httpx.get(f"{url}/health").json()["engine_batches"]
        finally:
            server.terminate()
            server.wait(timeout=30)
    report = {"requests": args.requests, "clients": args.clients, "max_new_tokens": args.max_new_tokens, "model": "tests/tiny_lmlm.py (2 layers, 96 wide)",
              "one_at_a_time": one_at_a_time, "concurrent": loaded, "lost_edits": lost, "engine_batches_total": batches,
              "speedup": loaded["requests_per_s"] / one_at_a_time["requests_per_s"], "target_speedup": 5}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"{'run':<16}{'requests/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for name, r in (("one at a time", one_at_a_time), (f"{args.clients} clients", loaded)):
        print(f"{name:<16}{r['requests_per_s']:>11.1f}{r['p50_ms']:>9.0f}{r['p99_ms']:>9.0f}{r['errors']:>8}")
    print(f"speedup {report['speedup']:.1f}x (target 5x); edits {args.edits}, lost {lost}, "
          f"stale reads after an edit {loaded['stale_reads_after_edit']} of {loaded['reads_after_edit_checked']} checked")


if __name__ == "__main__":
    main()
