"""Pretraining an LMLM or a Standard baseline on a built dataset, with the HF ``Trainer``.

The mode is the dataset's: ``lmlm data build --mode lmlm|standard``. The loss is the model's own
causal-LM cross-entropy on the precomputed labels. The same command runs unchanged under
``torchrun`` or ``accelerate launch`` (DDP; FSDP with ``fsdp: "full_shard auto_wrap"``): the
Trainer reads the launcher's environment, and the only distributed code here is configuration.
Checkpoints are plain HF folders (config.json, model.safetensors, the tokenizer with the four
lookup tokens) that ``AutoModelForCausalLM`` and ``AutoTokenizer`` load as they are.

- ``config``: ``TrainConfig``, the options of ``lmlm train`` and its YAML files;
- ``trainer``: ``LMLMTrainer`` (the log file, the speed, perplexity evaluation) and its callbacks;
- ``run``: ``train``, which wires data, model and Trainer together, and ``launch_training``;
- ``resume``: finding the last checkpoint, and keeping the log consistent across a resume.

Importing this package is light (no torch, no transformers): the CLI reads ``TrainConfig`` for its flags.
"""

from lmlm.train.config import TrainConfig
from lmlm.train.resume import logged_losses
from lmlm.train.run import launch_training, train

__all__ = ["TrainConfig", "launch_training", "logged_losses", "train"]
