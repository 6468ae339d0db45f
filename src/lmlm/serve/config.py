"""``ServeConfig``: the server's caps and protections, set by ``lmlm serve``'s flags.

It has a module of its own because the routes, the batcher and the request gate all read it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class ServeConfig:
    max_prompt_chars: int = 4000
    max_batch: int = 32  # prompts per request, and per engine batch
    max_new_tokens: int = 256
    window_ms: float = 5.0  # how long the first request of a batch waits for company
    read_only: bool = False
    api_key: str | None = None
    protect: Literal["writes", "all"] = "writes"  # what --api-key guards
    bind_host: str = "127.0.0.1"  # where uvicorn listens: on loopback without a key, only local Host names are served

    @property
    def max_body_bytes(self) -> int:
        """Room for a full batch of the longest prompts, each character escaped as JSON's 6-byte \\uXXXX, and 64 KiB."""
        return 6 * self.max_prompt_chars * self.max_batch + 65536
