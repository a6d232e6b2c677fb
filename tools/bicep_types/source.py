"""Reading a git repository of Azure/bicep-types-az (a clone or a bare mirror) at one commit.

Everything goes through ``git`` so a bare mirror needs no work tree, and the commit the files
came from is known exactly: the snapshot records it.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Node = dict[str, Any]

# generated/<provider folder>/<namespace, lower case>/<api version>/types.json
_TYPES_FILE = re.compile(r"^generated/[^/]+/(?P<namespace>[^/]+)/(?P<version>[^/]+)/types\.json$")
_STABLE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class SourceError(Exception):
    """The repository cannot be read, or it lacks a type the templates use."""


@dataclass(frozen=True)
class TypesFile:
    path: str  # relative to the repository root
    namespace: str
    version: str

    @property
    def stable(self) -> bool:
        return bool(_STABLE.match(self.version))


class TypesRepository:
    """One commit of a bicep-types-az repository."""

    def __init__(self, path: Path, revision: str = "HEAD") -> None:
        self.path = path
        self.commit = self._git("rev-parse", "--verify", f"{revision}^{{commit}}").strip()
        self.committed = self._git("show", "-s", "--format=%cI", self.commit).strip()
        self._cache: dict[str, list[Node]] = {}
        listing = self._git("ls-tree", "-r", "--name-only", self.commit, "generated/")
        self.files = [
            TypesFile(line, match["namespace"], match["version"])
            for line in listing.splitlines()
            if (match := _TYPES_FILE.match(line))
        ]
        if not self.files:
            raise SourceError(f"{path} at {self.commit} has no generated/*/*/*/types.json")

    def _git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(self.path), *args], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise SourceError(f"git {' '.join(args)} failed in {self.path}: {done.stderr.strip()}")
        return done.stdout

    def read(self, file: TypesFile) -> list[Node]:
        """The type nodes of one types.json (a large mirror may lack big blobs: say so)."""
        if file.path not in self._cache:
            text = self._git("cat-file", "blob", f"{self.commit}:{file.path}")
            nodes = json.loads(text)
            if not isinstance(nodes, list):
                raise SourceError(f"{file.path} is not a JSON array of types")
            self._cache[file.path] = nodes
        return self._cache[file.path]

    def files_of(self, namespace: str, version: str | None = None) -> list[TypesFile]:
        return [
            f
            for f in self.files
            if f.namespace == namespace.lower() and (version is None or f.version == version)
        ]


def resource_type_index(nodes: list[Node], name: str) -> int | None:
    """Index of the ResourceType node called ``name`` (``Type@version``, any letter case)."""
    wanted = name.lower()
    for index, node in enumerate(nodes):
        if node.get("$type") == "ResourceType" and str(node.get("name", "")).lower() == wanted:
            return index
    return None


def locate(repo: TypesRepository, resource_type: str, version: str) -> TypesFile:
    """The types.json that defines ``resource_type@version``; raises SourceError if none does."""
    namespace = resource_type.split("/", 1)[0]
    for file in repo.files_of(namespace, version):
        if resource_type_index(repo.read(file), f"{resource_type}@{version}") is not None:
            return file
    raise SourceError(f"{resource_type}@{version} is not defined at {repo.commit}")


def newest_stable(repo: TypesRepository, resource_type: str) -> str | None:
    """The newest non-preview API version that defines ``resource_type``, or None."""
    namespace = resource_type.split("/", 1)[0]
    candidates = [f for f in repo.files_of(namespace) if f.stable]
    for file in sorted(candidates, key=lambda f: f.version, reverse=True):
        if resource_type_index(repo.read(file), f"{resource_type}@{file.version}") is not None:
            return file.version
    return None
