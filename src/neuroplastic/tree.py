"""Minimal pytree utilities shared by both backends.

Parameters, states, gradients and rule states are nested ``dict``/``list``/``tuple``
containers whose leaves are arrays (or Python scalars).  ``None`` is an empty subtree.
The helpers here never look at the leaves, so they work on numpy, torch and JAX arrays
alike (and on JAX tracers inside ``jit``/``scan``).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

PyTree = Any


def _is_container(x: Any) -> bool:
    return isinstance(x, (dict, list, tuple))


def tree_map(fn: Callable[..., Any], tree: PyTree, *rest: PyTree) -> PyTree:
    """Apply ``fn`` leaf-wise to ``tree`` and any trees of the same structure."""
    if tree is None:
        return None
    if isinstance(tree, dict):
        return {k: tree_map(fn, tree[k], *(r[k] for r in rest)) for k in tree}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):  # NamedTuple
        return type(tree)(*(tree_map(fn, *xs) for xs in zip(tree, *rest)))
    if isinstance(tree, (list, tuple)):
        for r in rest:
            if r is None or len(r) != len(tree):
                raise ValueError("tree_map: trees have different structures")
        return type(tree)(tree_map(fn, *xs) for xs in zip(tree, *rest))
    return fn(tree, *rest)


def tree_leaves(tree: PyTree) -> list[Any]:
    """Leaves in a deterministic order (dict keys in insertion order)."""
    return list(_iter_leaves(tree))


def _iter_leaves(tree: PyTree) -> Iterator[Any]:
    if tree is None:
        return
    if isinstance(tree, dict):
        for k in tree:
            yield from _iter_leaves(tree[k])
    elif isinstance(tree, (list, tuple)):
        for x in tree:
            yield from _iter_leaves(x)
    else:
        yield tree


def tree_paths(tree: PyTree, prefix: str = "") -> list[str]:
    """Dotted paths of the leaves, in :func:`tree_leaves` order (``layers.0.w_in``)."""
    out: list[str] = []
    if tree is None:
        return out
    if isinstance(tree, dict):
        for k in tree:
            out.extend(tree_paths(tree[k], f"{prefix}{k}."))
    elif isinstance(tree, (list, tuple)):
        for i, x in enumerate(tree):
            out.extend(tree_paths(x, f"{prefix}{i}."))
    else:
        out.append(prefix[:-1])
    return out


def tree_flatten_dict(tree: PyTree) -> dict[str, Any]:
    """``{path: leaf}`` for every leaf."""
    return dict(zip(tree_paths(tree), tree_leaves(tree)))


def tree_unflatten_like(template: PyTree, leaves: list[Any]) -> PyTree:
    """Rebuild ``template``'s structure with ``leaves`` (in :func:`tree_leaves` order)."""
    it = iter(leaves)
    out = tree_map(lambda _: next(it), template)
    rest = list(it)
    if rest:
        raise ValueError(f"tree_unflatten_like: {len(rest)} leaves left over")
    return out


def get_at(tree: PyTree, path: tuple) -> Any:
    """Subtree at a key path such as ``("layers", 0, "w")``."""
    for k in path:
        tree = tree[k]
    return tree


def set_at(tree: PyTree, path: tuple, value: Any) -> None:
    """Replace the subtree at a key path, in place (the containers must be mutable)."""
    for k in path[:-1]:
        tree = tree[k]
    tree[path[-1]] = value
