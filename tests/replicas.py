"""Two or more `lmlm serve` replicas sharing one PostgreSQL KB, under concurrent load with edits: for the
replica test and ``benchmarks/serve_load.py --replicas``.

Every generate ends its prompt with a call (``<|db_entity|> E<|db_relationship|> R<|db_return|>``), so the
server answers it from the KB whatever the model would write. Edits (an update of one fact, or forgetting
an entity) go to the replicas in turn; once an edit's response has arrived, its old values are retired,
and any generate sent after that moment (to any replica) whose lookup of that entity and relation returns a
retired value is a stale answer.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from pathlib import Path

import httpx
from live_server import start_serve

CALL = "{prompt} <|db_entity|> {entity}<|db_relationship|> {relation}<|db_return|>"


def start_replica(model: Path, kb_url: str, port: int, max_batch: int = 32) -> subprocess.Popen:
    """`lmlm serve` in its own process; the URL reaches it through the environment (``--kb env:LMLM_KB_URL``)."""
    return start_serve(model, "env:LMLM_KB_URL", port, max_batch, env={**os.environ, "LMLM_KB_URL": kb_url})


def stop_replicas(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Retired:
    """Old values of (entity, relation), each with the moment its edit's response arrived."""

    def __init__(self):
        self._lock = threading.Lock()
        self._at: dict[tuple[str, str], tuple[set[str], float]] = {}

    def retire(self, entity: str, relation: str, value: str, at: float) -> None:
        with self._lock:
            values, _ = self._at.get((entity, relation), (set(), at))
            self._at[(entity, relation)] = (values | {value}, at)

    def judge(self, lookup: dict, sent: float) -> tuple[bool, bool]:
        """(checked, stale) for one lookup of a generate sent at ``sent``."""
        with self._lock:
            found = self._at.get((lookup["entity"], lookup["relation"]))
        if found is None or sent <= found[1]:
            return False, False
        return True, lookup["value"] in found[0]


def run_load(urls: list[str], facts: list[dict], generates: int, edits: int, clients: int = 8, seed: int = 0,
             max_new_tokens: int = 4) -> dict:
    """``generates`` call-ending generates from ``clients`` threads over all replicas, and ``edits`` edits
    (updates and forgets in turn) sent to the replicas in turn from one more thread, while they run."""
    rng = random.Random(seed)
    by_entity: dict[str, list[dict]] = {}
    for fact in facts:
        by_entity.setdefault(fact["entity"], []).append(fact)
    targets = rng.sample(sorted(by_entity), min(edits, len(by_entity)))
    hot = [f for e in targets for f in by_entity[e]]  # half the generates ask for facts that will be edited
    retired, counts, lock = Retired(), {"generates": 0, "errors": 0, "checked": 0, "stale": 0, "edits": 0, "versions": set()}, threading.Lock()
    todo = iter(range(generates))
    edits_done = threading.Event()

    def generate(client: httpx.Client, url: str, fact: dict) -> None:
        sent = time.perf_counter()
        reply = client.post(f"{url}/v1/generate", json={"prompt": CALL.format(prompt="Fact:", **fact), "max_new_tokens": max_new_tokens})
        with lock:
            counts["generates"] += 1
            if reply.status_code != 200:
                counts["errors"] += 1
                return
            body = reply.json()
            counts["versions"].add(body.get("kb_version"))
            for lookup in body["lookups"]:
                checked, stale = retired.judge(lookup, sent)
                counts["checked"] += checked
                counts["stale"] += stale

    def client_loop(k: int) -> None:
        local = random.Random(seed * 1000 + k)
        with httpx.Client(timeout=60) as client:
            for i in todo:
                fact = local.choice(hot if i % 2 else facts)
                generate(client, urls[i % len(urls)], fact)

    def editor() -> None:
        with httpx.Client(timeout=60) as client:
            for n, entity in enumerate(targets):
                url, other = urls[n % len(urls)], urls[(n + 1) % len(urls)]
                old = by_entity[entity]
                if n % 2:
                    reply = client.post(f"{url}/v1/kb/forget", json={"entity": entity})
                    gone = old
                else:
                    reply = client.put(f"{url}/v1/kb/triplets/{old[0]['id']}", json={"value": f"Edited {n}"})
                    gone = old[:1]
                at = time.perf_counter()
                with lock:
                    counts["edits"] += reply.status_code == 200
                    counts["errors"] += reply.status_code != 200
                for fact in gone:
                    retired.retire(fact["entity"], fact["relation"], fact["value"], at)
                generate(client, other, gone[0])  # at once, on another replica than the one that made the edit
        edits_done.set()

    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(clients)] + [threading.Thread(target=editor)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    counts["versions"] = len(counts["versions"] - {None})
    return {**counts, "seconds": round(seconds, 2), "generates_per_s": round(counts["generates"] / seconds, 1)}


def kb_facts(kb) -> list[dict]:
    """Every live fact of ``kb``."""
    return [{"id": i, "entity": e, "relation": r, "value": v} for i, e, r, v, *_ in kb.triplets()]
