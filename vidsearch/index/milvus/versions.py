"""Collection names that a rebuild replaces at once: the name is a Milvus alias of a versioned collection.

`vidsearch index build --backend milvus --collection clips` fills a new collection,
`clips__b20261206044300` (UTC, to the second), and only once every row is in, indexed and loaded
points the alias `clips` at it and drops the collection it replaces. Searches by the name go on
answering from the old collection for the whole build; a build that fails or is killed leaves the old
one served (its unfinished collection is dropped, or, after a kill, by the next build of that name).
A plain collection of that name (one `vidsearch serve` created) is replaced the same way, except
for the moment between dropping it and creating the alias. Every call here is a raw pymilvus call:
the caller translates its errors.
"""

from __future__ import annotations

import re
import time
from typing import Any

from vidsearch.errors import ConfigError

_SUFFIX = "__b"
_STAMP = "%Y%m%d%H%M%S"
MAX_NAME = 255
"""Milvus's limit on a collection name."""


def version_name(name: str, now: float | None = None) -> str:
    """The collection a build of `name` fills (ConfigError if the name leaves no room for the stamp)."""
    stamped = f"{name}{_SUFFIX}{time.strftime(_STAMP, time.gmtime(now))}"
    if len(stamped) > MAX_NAME:
        raise ConfigError(f"collection name {name!r} is too long to rebuild: at most "
                          f"{MAX_NAME - len(stamped) + len(name)} characters")  # fmt: skip
    return stamped


def _is_version_of(collection: str, name: str) -> bool:
    return re.fullmatch(re.escape(name) + re.escape(_SUFFIX) + r"\d{14}", collection) is not None


def resolve(client: Any, name: str) -> str | None:
    """The collection a name means: itself, the collection its alias points at, or None if neither."""
    if not client.has_collection(name):
        return None
    return str(client.describe_collection(name)["collection_name"])


def publish(client: Any, name: str, version: str) -> list[str]:
    """Point `name` at the collection `version` and drop what it replaces; returns the dropped names.

    Older versions of `name` that no alias points at (builds that were killed) are dropped too; a
    newer one may be a build still running, so it is left alone.
    """
    current = resolve(client, name)
    dropped = []
    if current is None:
        client.create_alias(version, name)
    elif current == name:
        client.drop_collection(name)
        dropped.append(name)
        client.create_alias(version, name)
    else:
        client.alter_alias(version, name)
        client.drop_collection(current)
        dropped.append(current)
    for collection in client.list_collections():
        if _is_version_of(collection, name) and collection < version and not client.list_aliases(
                collection).get("aliases"):  # fmt: skip
            client.drop_collection(collection)
            dropped.append(collection)
    return dropped


def drop_name(client: Any, name: str) -> bool:
    """Drop the collection a name means, and the alias if it is one; returns whether there was one."""
    current = resolve(client, name)
    if current is None:
        return False
    if current != name:
        client.drop_alias(name)
    client.drop_collection(current)
    return True
