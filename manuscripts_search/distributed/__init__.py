"""Scale-out on Ray (optional: ``pip install manuscripts-search[ray]``).

- :mod:`.ray_embed`: ``msearch embed --engine ray``, the embedding worker's stages as a Ray Data
  pipeline (claims → image load/decode/preprocess → batched inference in actors → batched writes);
- :mod:`.host_limits`: per-host request slots and rates shared by every process of a Ray job;
- :mod:`.runtime`: connecting to (or starting) Ray, with a clear error when it is not installed.

The harvest side (``msearch harvest --engine ray``) lives in :mod:`harvest.ray_harvest`, since
this package, like the rest of ``manuscripts_search``, does not import the harvester.

Nothing here is imported by ``manuscripts_search`` itself, and no module of this package imports
Ray at import time: the default installation stays Ray-free.
"""
