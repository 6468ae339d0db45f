"""One `lmlm demo` run with a changed recipe (DemoPlan fields as JSON, and "seed"), printing the headline figures.

    python experiments/demo_recipe.py OUT '{"people": 1500, "seed": 1}'
    python experiments/demo_recipe.py OUT '{"steps": 200}' --quick     (changes to the --quick plan)

Results of the runs tried so far are in experiments/demo_recipe.md.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace

from lmlm.demo import QUICK, DemoPlan, run_demo


def main() -> None:
    out, changes = sys.argv[1], json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}")
    seed = changes.pop("seed", 0)
    base = QUICK if "--quick" in sys.argv[3:] else DemoPlan()
    start = time.perf_counter()
    report = run_demo(out, plan=replace(base, **changes), seed=seed, echo=lambda line: None, progress=False)
    lmlm, std = report["lmlm"], report["standard"]
    print(json.dumps({"changes": changes, "seed": seed, "minutes": round((time.perf_counter() - start) / 60, 1),
                      "completion_train": lmlm["completion_train"], "completion_inject": lmlm["completion_inject"],
                      "standard_completion_train": std["completion_train"], "standard_completion_inject": std["completion_inject"],
                      "factual_precision": lmlm["factual_precision"], "standard_factual_precision": std["factual_precision"],
                      "live_edit_shown": report["live_edit"]["edit_shown"],
                      "forget": lmlm["forget"], "ppl": lmlm["ppl"], "standard_ppl": std["ppl"]}, indent=1))


if __name__ == "__main__":
    main()
