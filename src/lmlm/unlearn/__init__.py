"""TOFU-style unlearning on the synthetic world (``lmlm experiment unlearn``): an LMLM forgets people by
deleting their facts from its KB, against gradient unlearning (GA, GD, NPO, SimNPO) of a Standard model's
weights and of the LMLM's, scored by Forget Quality and Model Utility (Maini et al. 2024, TOFU, as
open-unlearning computes them).

- ``config``: ``UnlearnConfig``, the command's options;
- ``questions``: question, paraphrased and perturbed answers, and world facts, made from the world;
- ``scoring``: teacher-forced answer scores (an LMLM's gold call answered by its KB);
- ``metrics``: truth ratio, Forget Quality, the utility parts and their harmonic mean;
- ``evaluation``: Forget Quality and Model Utility of one model;
- ``methods``: the gradient methods as HF ``Trainer``s;
- ``run``: the experiment; ``report``: best learning rates, report.json and the plot.

Importing this package is light (no torch): the CLI reads ``UnlearnConfig`` for its flags.
"""

from lmlm.unlearn.config import UnlearnConfig

__all__ = ["UnlearnConfig"]
