"""``recgym fit``: fit a v1 world to an interaction log and measure how faithful it is (issue #20).

Modules (imported on their own; this package imports nothing, so the env layer can load a fitted
world through :mod:`recgym.fit.worlddir` without pulling in the fitting code):

* :mod:`recgym.fit.log` -- :func:`~recgym.fit.log.write_log`: a known recgym world's own logs in the
  generic schema (the round trip's source);
* :mod:`recgym.fit.readers` -- generic CSV / Parquet, KuaiRec and KuaiRand logs as one :class:`~recgym.fit.readers.Log`;
* :mod:`recgym.fit.core` -- the fit's settings, ALS and batched replay of logged exposures;
* :mod:`recgym.fit.model` -- :func:`~recgym.fit.model.fit_world`: embeddings by ALS, quality, popularity,
  click model, leave model, activity and return gaps, interest drift;
* :mod:`recgym.fit.drift` -- interest drift as one walk calibrated by replay, with its resolution;
* :mod:`recgym.fit.worlddir` -- the versioned ``WORLD_DIR`` format (manifest + ``.npy``), loaded by
  ``gym.make("recgym/Fitted-v1", world_dir=...)``;
* :mod:`recgym.fit.fidelity` -- the fidelity report: the fitted world replays held-out exposures.

Format, model and measured numbers: ``docs/fit.md``.
"""
