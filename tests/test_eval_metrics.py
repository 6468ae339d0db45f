"""Metric code on hand-made cases whose answers are known."""

import math

import numpy as np
import torch

from lmlm.evaluate.metrics import completion_correct, fact_supported
from lmlm.evaluate.report import ROWS, table
from lmlm.perplexity import perplexities, token_nll
from lmlm.world import atomic_facts


def test_perplexity_variants_by_hand():
    # 5 tokens; token 0 has no context. Token 2 is a lookup-call token (trained, not T_org);
    # token 3 is a VALUE token (not trained, not T_org).
    nll = np.array([0.0, 1.0, 2.0, 3.0, 0.5])
    trained = np.array([False, True, True, False, True])
    org = np.array([False, True, False, False, True])
    out = perplexities(nll, trained, org)
    assert math.isclose(out["static"], math.exp((1.0 + 0.5) / 2))
    assert math.isclose(out["normalized"], math.exp((1.0 + 2.0 + 0.5) / 2))
    assert math.isclose(out["loss"], (1.0 + 2.0 + 0.5) / 3)
    assert out["t_org"] == 2


def test_token_nll_matches_log_softmax():
    class Bigram(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.table = torch.nn.Parameter(torch.log_softmax(torch.randn(6, 6, generator=torch.Generator().manual_seed(0)), -1))

        def forward(self, input_ids, attention_mask=None):
            return type("Out", (), {"logits": self.table[input_ids]})

    model, ids = Bigram(), torch.tensor([[1, 4, 2, 2, 5]])
    nll = token_nll(model, ids)[0]
    expected = [0.0] + [-float(model.table[a, b]) for a, b in zip(ids[0, :-1], ids[0, 1:])]
    assert torch.allclose(nll, torch.tensor(expected), atol=1e-6)


def test_completion_scoring_edge_cases():
    assert completion_correct(" Lorwen, where she grew up", "Lorwen")
    assert completion_correct(" 4 March 1950. She", "4 March 1950")
    assert completion_correct(" the University of Lorwen.", "University of Lorwen")
    assert completion_correct(" LORWEN!", "lorwen")
    assert completion_correct(" Bogotá", "Bogota")  # accents fold; distinct letters such as ø do not
    assert not completion_correct(" Lorwenshire", "Lorwen")  # whole words only
    assert not completion_correct(" one two three four five Lorwen", "Lorwen")  # sixth word
    assert completion_correct(" one two three four Lorwen", "Lorwen")
    assert not completion_correct("", "Lorwen")
    assert not completion_correct(" anything", "")
    assert not completion_correct(" 4 March", "4 March 1950")  # cut off by the 5-word window is not a match


def test_atomic_facts_of_a_bio():
    bio = ("Ada Ashby is a Belmoran citizen. She was born on 4 March 1950. Her hometown is Lorwen. "
           "Bram Oakley works for Foxglove Pharma. She likes tea. He was born on 1")
    facts = atomic_facts(bio)
    assert facts == [("Ada Ashby", "Nationality", "Belmoran"), ("She", "Birth Date", "4 March 1950"),
                     ("Her", "Birth City", "Lorwen"), ("Bram Oakley", "Employer", "Foxglove Pharma")]
    truth = {"Nationality": "Belmoran", "Birth Date": "4 March 1950", "Birth City": "Calder", "Employer": "Foxglove Pharma"}
    assert [fact_supported(f, "Ada Ashby", truth) for f in facts] == [True, True, False, False]


def test_report_table_side_by_side():
    report = {"lmlm": {"completion_train": 0.95, "completion_db_off": 0.02, "ppl": {"static": 2.0, "normalized": 3.0, "dynamic": 3.5},
                       "forget": {"leaked_near_neighbour": 0}},
              "standard": {"completion_train": 0.1, "ppl": {"standard": 4.0}}}
    text = table(report)
    assert "| completion, train people | 0.950 | 0.100 |" in text
    assert "| perplexity, normalized | 3.00 | 4.00 |" in text
    assert "| answers leaked via near neighbours | 0 | – |" in text
    assert "| completion, train people, database off | 0.020 | – |" in text


def test_each_chart_draws_only_its_own_kind_of_figure():
    charts = {chart: [(path, kind) for _, path, kind, drawn in ROWS if drawn == chart] for chart in ("accuracy", "forgetting", "perplexity")}
    assert charts["perplexity"] and all(kind == "ppl" for _, kind in charts["perplexity"])
    assert charts["forgetting"] and all(path[0] == "forget" and kind == "acc" for path, kind in charts["forgetting"])
    assert charts["accuracy"] and all(path[0] != "forget" and kind == "acc" for path, kind in charts["accuracy"])
    assert sum(map(len, charts.values())) == sum(1 for *_, drawn in ROWS if drawn)


def test_the_metrics_read_facts_through_an_extractor_not_the_worlds_templates():
    import subprocess
    import sys

    code = "import sys, lmlm.evaluate.metrics; print('lmlm.world' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
