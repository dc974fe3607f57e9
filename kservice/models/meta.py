"""ObjectMeta and owner references: the metadata every stored object carries."""

from __future__ import annotations

from typing import Any

import attrs

from kservice._frozen import FrozenDict, freeze_labels, to_tuple
from kservice.models._reader import Reader

__all__ = ["ObjectMeta", "OwnerReference"]


@attrs.frozen
class OwnerReference:
    api_version: str
    kind: str
    name: str
    uid: str = ""
    controller: bool | None = None
    block_owner_deletion: bool | None = None

    @classmethod
    def from_reader(cls, r: Reader) -> OwnerReference:
        return cls(
            api_version=r.str("apiVersion") or "",
            kind=r.str("kind") or "",
            name=r.str("name") or "",
            uid=r.str("uid") or "",
            controller=r.bool("controller"),
            block_owner_deletion=r.bool("blockOwnerDeletion"),
        )

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {"apiVersion": self.api_version, "kind": self.kind, "name": self.name}
        if self.uid:
            out["uid"] = self.uid
        if self.controller is not None:
            out["controller"] = self.controller
        if self.block_owner_deletion is not None:
            out["blockOwnerDeletion"] = self.block_owner_deletion
        return out


@attrs.frozen
class ObjectMeta:
    """metadata. ``namespace`` is ``""`` for cluster-scoped objects and before defaulting."""

    name: str = ""
    namespace: str = ""
    generate_name: str = ""
    labels: FrozenDict[str, str] = attrs.field(factory=FrozenDict, converter=freeze_labels)
    annotations: FrozenDict[str, str] = attrs.field(factory=FrozenDict, converter=freeze_labels)
    uid: str = ""
    resource_version: str = ""
    generation: int = 0
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    deletion_grace_period_seconds: int | None = None
    owner_references: tuple[OwnerReference, ...] = attrs.field(default=(), converter=to_tuple)
    finalizers: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)

    @classmethod
    def from_reader(cls, r: Reader) -> ObjectMeta:
        # Read-only fields the apiserver fills in are accepted on input (kubectl get -o yaml
        # output is valid input) and ignored where they would be server-assigned.
        r.ignore("managedFields", "selfLink")
        return cls(
            name=r.str("name") or "",
            namespace=r.str("namespace") or "",
            generate_name=r.str("generateName") or "",
            labels=r.str_map("labels"),
            annotations=r.str_map("annotations"),
            uid=r.str("uid") or "",
            resource_version=r.str("resourceVersion") or "",
            generation=r.int("generation") or 0,
            creation_timestamp=r.str("creationTimestamp"),
            deletion_timestamp=r.str("deletionTimestamp"),
            deletion_grace_period_seconds=r.int("deletionGracePeriodSeconds"),
            owner_references=r.objs("ownerReferences", OwnerReference.from_reader) or (),
            finalizers=r.str_list("finalizers") or (),
        )

    @classmethod
    def from_manifest(cls, data: object, path: str = "metadata") -> ObjectMeta:
        r = Reader(data, path)
        out = cls.from_reader(r)
        r.finish()
        return out

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.creation_timestamp is not None:
            out["creationTimestamp"] = self.creation_timestamp
        if self.deletion_grace_period_seconds is not None:
            out["deletionGracePeriodSeconds"] = self.deletion_grace_period_seconds
        if self.deletion_timestamp is not None:
            out["deletionTimestamp"] = self.deletion_timestamp
        if self.finalizers:
            out["finalizers"] = list(self.finalizers)
        if self.generate_name:
            out["generateName"] = self.generate_name
        if self.generation:
            out["generation"] = self.generation
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.name:
            out["name"] = self.name
        if self.namespace:
            out["namespace"] = self.namespace
        if self.owner_references:
            out["ownerReferences"] = [o.to_manifest() for o in self.owner_references]
        if self.resource_version:
            out["resourceVersion"] = self.resource_version
        if self.uid:
            out["uid"] = self.uid
        return out
