"""Experiments with known truth: the procedural face world, its trained generators, and the transfer benchmark.

- :mod:`realface.bench.faces`: procedural faces drawn as photos or as CG renders from one parameter vector.
- :mod:`realface.bench.world`: the trained toy world (``G_real``, ``D``, ``G_oracle``, a parameter
  regressor), made by ``realface bench world`` and shipped in ``realface/bench/data``.
- :mod:`realface.bench.transfer`: ``realface bench transfer``, the whole method against the truth.
- :mod:`realface.bench.consistency`: the paper's identity-consistency protocol in the toy world.

This package may import training, inversion and the pipeline; :mod:`realface.metrics` never imports it.
"""
