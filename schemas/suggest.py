"""Did you mean ...?" for config errors: the valid keys at a config path, and the close match of a
misspelled key, stage name, hierarchy builder or choice among them.

>>> from privprep.schemas.config import PipelineConfig
>>> keys_at(PipelineConfig, ("stages", 0, "pseudonymize", "pseudonymize"))
['columns', 'domain', 'key']
>>> keys_at(PipelineConfig, ("columns", "age"))
['role', 'bounds', 'categories']
>>> closest("colums", ["columns", "domain", "key"]), closest("salt", ["columns", "domain", "key"])
('columns', None)
"""

from __future__ import annotations

import difflib
import types
from typing import Any, Annotated, Iterable, Union, get_args, get_origin

from pydantic import BaseModel

#: How alike a word must be to a valid one to be suggested (difflib's ratio).
CUTOFF = 0.6


def closest(word: Any, candidates: Iterable[Any]) -> str | None:
    """The candidate closest to ``word`` when one is close enough, else ``None``."""
    if not isinstance(word, str):
        return None
    names = [str(c) for c in candidates if str(c) != word]
    found = difflib.get_close_matches(word, names, n=1, cutoff=CUTOFF)
    if not found:  # a different case or separator ('quasi-identifier') is still the same word
        folded = {_fold(n): n for n in names}
        return folded.get(_fold(word))
    return found[0]


def did_you_mean(word: Any, candidates: Iterable[Any]) -> str:
    """``" (did you mean 'X'?)"`` when a candidate is close to ``word``, else ``""``.

    >>> did_you_mean("nu-entropy", ["nu_entropy", "loss"])
    " (did you mean 'nu_entropy'?)"
    """
    match = closest(word, candidates)
    return f" (did you mean '{match}'?)" if match is not None else ""


def did_you_mean_any(unknown: Iterable[str], candidates: Iterable[Any]) -> str:
    """The hint for the first of several unknown names that has a close candidate, naming which it is.

    >>> did_you_mean_any(["zip", "patiend_id"], ["patient_id", "name"])
    " (did you mean 'patient_id' for 'patiend_id'?)"
    """
    names = list(unknown)
    options = list(candidates)
    for name in names:
        match = closest(name, options)
        if match is not None:
            return f" (did you mean '{match}'?)" if len(names) == 1 else f" (did you mean '{match}' for '{name}'?)"
    return ""


def keys_at(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """The keys a mapping at config path ``loc`` (pydantic's error location, below ``root``) may hold,
    or ``None`` when the path does not lead to a model."""
    current: list[Any] = [root]
    previous: Any = None
    for part in loc:
        members = _members(current)
        following = [t for kind in members for t in _step(kind, part)]
        if not following and isinstance(part, str):  # an untagged union's branch: 'function-after[_check(), LDiversity]'
            following = [kind for kind in members if _is_model(kind) and part.endswith(f", {kind.__name__}]")]
        if not following and part == previous:
            continue  # a tagged union repeats the tag in the location
        if not following:
            return None
        current, previous = following, part
    keys = [field.alias or name for kind in _members(current) if _is_model(kind) for name, field in kind.model_fields.items()]
    return list(dict.fromkeys(keys)) or None


def _step(kind: Any, part: Any) -> list[Any]:
    if _is_model(kind):
        fields = {field.alias or name: field for name, field in kind.model_fields.items()}
        return [fields[part].annotation] if isinstance(part, str) and part in fields else []
    origin, args = get_origin(kind), get_args(kind)
    if origin in (list, tuple, set, frozenset) and isinstance(part, int) and args:
        return [args[part] if origin is tuple and len(args) > part and args[-1] is not Ellipsis else args[0]]
    if origin is dict and isinstance(part, str) and len(args) == 2:
        return [args[1]]
    return []


def _members(kinds: list[Any]) -> list[Any]:
    """The concrete types behind Annotated, Optional and unions."""
    out: list[Any] = []
    for kind in kinds:
        origin = get_origin(kind)
        if origin is Annotated:
            out.extend(_members([get_args(kind)[0]]))
        elif origin is Union or origin is types.UnionType:
            out.extend(_members([a for a in get_args(kind) if a is not type(None)]))
        else:
            out.append(kind)
    return out


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def _fold(word: str) -> str:
    return word.lower().replace("-", "_").replace(" ", "_")


__all__ = ["CUTOFF", "closest", "did_you_mean", "did_you_mean_any", "keys_at"]
