"""edgebert on Ray Data (``pip install "edgebert[ray]"``): a thin re-export of :mod:`edgebert.batch.on_ray`.

>>> import ray, edgebert.ray
>>> ds = ray.data.read_parquet("docs.parquet")
>>> ds = ds.map_batches(edgebert.ray.Predictor, fn_constructor_kwargs={"bundle": "bundles/minilm-int8"},
...                     concurrency=4, num_cpus=1, batch_size=2048)

Each actor loads the bundle once; ``Predictor.__call__`` adds the task's result columns and an ``error``
column to each batch. ``edgebert batch --ray`` runs whole files this way.
"""

from __future__ import annotations

from edgebert.batch.on_ray import Predictor

__all__ = ["Predictor"]
