"""Generation with lookups. The modules, from the bottom up:

- ``config``: the options (``GenerationConfig``), the result and the provenance of each lookup, the lookup token ids;
- ``sampling``: from logits to tokens (repetition penalty, lookup biases and bans, greedy or seeded sampling);
- ``cache``: the KV cache over a batch, fed left-padded, with tokens fed on trial retracted;
- ``layout``: the CPU weight layout and torch.compile of the steps;
- ``calls``: reading a call from token ids, answering it from the KB with the no-answer fallback, the forced tokens;
- ``state``: ``RowState`` and ``Batch``, what the loop carries;
- ``drafts``: drafts from a row's own text, the n-gram table, or a draft model;
- ``loop``: ``LookupEngine``, the batched loop;
- ``reference``: the naive reference loop, the correctness anchor;
- ``api``: the ``LMLM`` facade, checkpoint loading, JSONL files.
"""

from lmlm.engine.api import LMLM, generate_file, load_model, load_tokenizer
from lmlm.engine.calls import ChosenValue, choose_value, encode_text, inside_call, query_of, strip_calls
from lmlm.engine.config import FALLBACKS, GenerationConfig, GenerationResult, LookupTokens, Provenance
from lmlm.engine.drafts import check_same_vocabulary, repeated_ngram
from lmlm.engine.loop import LookupEngine
from lmlm.engine.reference import reference_loop
from lmlm.engine.sampling import choose, process_logits, sampling_generator

__all__ = ["FALLBACKS", "LMLM", "ChosenValue", "GenerationConfig", "GenerationResult", "LookupEngine", "LookupTokens", "Provenance",
           "check_same_vocabulary", "choose", "choose_value", "encode_text", "generate_file", "inside_call", "load_model", "load_tokenizer",
           "process_logits", "query_of", "reference_loop", "repeated_ngram", "sampling_generator", "strip_calls"]
