"""An offline multi-source model zoo and the benchmark that ranks it: `modelrank zoo build`, `modelrank benchmark`.

* ``datasets`` — more real labelled images that ship in packages (MNIST sample, faces, textures);
* ``tasks`` — source datasets and target tasks derived from them (class subsets, few-shot sizes, domain shifts),
  registered as ordinary datasets (``source/...``, ``task/...``);
* ``presets`` — what ``ci``, ``demo`` and ``full`` build and measure;
* ``build`` — fine-tunes every (architecture, source) pair into ``zoo/<preset>/<arch>-<source>``;
* ``registry`` — makes built zoo models ordinary registry models (read lazily from the cache);
* ``pipeline`` — extract → score → fine-tune → evaluate for every (zoo model, target task), resumable.

Importing this package does no work; the submodules are imported where needed.
"""
