"""One `lmlm demo` run with a changed recipe (DemoPlan fields as JSON), printing the headline figures.

    python experiments/demo_recipe.py OUT '{"people": 1500}'

Results of the runs tried so far are in experiments/demo_recipe.md.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace

from lmlm.demo import DemoPlan, run_demo


def main() -> None:
    out, changes = sys.argv[1], json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}")
    start = time.perf_counter()
    report = run_demo(out, plan=replace(DemoPlan(), **changes), echo=lambda line: None)
    lmlm, std = report["lmlm"], report["standard"]
    print(json.dumps({"changes": changes, "minutes": round((time.perf_counter() - start) / 60, 1),
                      "completion_train": lmlm["completion_train"], "completion_inject": lmlm["completion_inject"],
                      "factual_precision": lmlm["factual_precision"], "standard_factual_precision": std["factual_precision"],
                      "forget": lmlm["forget"], "ppl": lmlm["ppl"], "standard_ppl": std["ppl"]}, indent=1))


if __name__ == "__main__":
    main()
