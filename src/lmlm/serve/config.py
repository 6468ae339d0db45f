"""``ServeConfig``: the server's caps and protections, set by ``lmlm serve``'s flags.

It has a module of its own because the routes, the batcher and the request gate all read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class ServeConfig:
    max_prompt_chars: int = field(default=4000, metadata={"help": "cap on a prompt's characters", "ge": 1})
    max_batch: int = field(default=32, metadata={"help": "prompts per request and per engine batch", "ge": 1})
    max_new_tokens: int = field(default=256, metadata={"help": "cap on a request's max_new_tokens", "ge": 1})
    window_ms: float = field(default=5.0, metadata={"help": "how long a request waits to be batched with others", "ge": 0})
    read_only: bool = field(default=False, metadata={"help": "turn the KB write endpoints off"})
    api_key: str | None = field(default=None, metadata={"help": "require 'Authorization: Bearer KEY' (also read from LMLM_API_KEY)"})
    protect: Literal["writes", "all"] = field(default="writes", metadata={"help": "what the API key guards", "choices": ("writes", "all")})
    bind_host: str = field(default="127.0.0.1", metadata={  # on loopback without a key, only local Host names are served
        "help": "bind address", "flag": "--host"})

    @property
    def max_body_bytes(self) -> int:
        """Room for a full batch of the longest prompts, each character escaped as JSON's 6-byte \\uXXXX, and 64 KiB."""
        return 6 * self.max_prompt_chars * self.max_batch + 65536
