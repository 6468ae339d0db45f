"""The paper's experiments at a scale this machine can run, each behind ``lmlm experiment NAME``:

- ``memorization``: the loss on the facts' value tokens over training, LMLM vs Standard, from their logs;
- ``offload``: models trained with a growing share of the facts annotated as lookups, evaluated side by side;
- ``charts``: the line charts they draw.
"""
