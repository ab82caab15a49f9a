"""Row selection on KV caches that never changes the source cache.

The search forks one cache into many candidates and may resample a block from the same beams,
so a beam's cache must survive the forwards of its candidates. `DynamicLayer` and
`DynamicSlidingWindowLayer` (transformers 5.x, `cache_utils.py`) grow by rebinding `keys` and
`values` to new tensors (`torch.cat`), so a shallow copy of the cache and its layers is enough to
keep the source intact. Other layer types may write in place, so they are deep-copied.
"""

from __future__ import annotations

import copy

import torch
from transformers.cache_utils import Cache, DynamicLayer, DynamicSlidingWindowLayer

_REBINDING_LAYERS = (DynamicLayer, DynamicSlidingWindowLayer)


def select_rows(cache: Cache, indices: torch.Tensor) -> Cache:
    """Return a new cache whose row `i` is row `indices[i]` of `cache`.

    Args:
        cache: The source cache; it is not modified, and forwards on the result leave it intact.
        indices: Row indices, shape `(new_batch,)`; repeats are allowed.

    Returns:
        A cache with `new_batch` rows.
    """
    indices = indices.to(dtype=torch.long)
    if all(type(layer) in _REBINDING_LAYERS for layer in cache.layers):
        new = copy.copy(cache)
        new.layers = [copy.copy(layer) for layer in cache.layers]
        if _is_identity(cache, indices):
            return new
        for layer in new.layers:
            assert isinstance(layer, DynamicLayer)
            keys, values = layer.keys, layer.values
            if layer.is_initialized and keys is not None and values is not None and keys.numel():
                layer.keys = keys.index_select(0, indices.to(keys.device))
                layer.values = values.index_select(0, indices.to(values.device))
        return new

    new = copy.deepcopy(cache)
    new.reorder_cache(indices)  # type: ignore[arg-type]
    return new


def repeat_rows(cache: Cache, repeats: int) -> Cache:
    """Return a new cache with each row of `cache` repeated `repeats` times in place."""
    rows = batch_size(cache)
    return select_rows(cache, torch.arange(rows).repeat_interleave(repeats))


def batch_size(cache: Cache) -> int:
    """Return the number of rows of an initialised cache."""
    for layer in cache.layers:
        keys = getattr(layer, "keys", None)
        if keys is not None and keys.dim() == 4:
            return int(keys.shape[0])
    msg = "The cache has no initialised layer; run the prompt through the model first."
    raise ValueError(msg)


def _is_identity(cache: Cache, indices: torch.Tensor) -> bool:
    rows = batch_size(cache)
    return indices.numel() == rows and bool(
        torch.equal(indices.cpu(), torch.arange(rows, dtype=torch.long))
    )
