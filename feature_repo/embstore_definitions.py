"""Feast definitions of the embedding versions in this repo, kept by embstore.

Plain Feast is all a consumer needs (embstore does not have to be installed):

- each published version of an embedding set is a FeatureView ``<set>__v<N>`` with the
  feature ``embedding`` (Array(Float32)) and any extras its producer publishes (e.g.
  ``leaves``), keyed on the set's entity (e.g. ``item_id``), its rows stamped with the
  version's valid-from time;
- each alias is a FeatureService ``<set>__<alias>`` (e.g. ``movies__prod``) over the
  version the alias names now; embstore moves it with every promote and rollback.

The objects are listed in ``embstore_objects.json`` beside this file, which embstore
rewrites whenever it publishes, collects or moves an alias, so the repo's definitions
are always what the registry holds: ``feast plan`` shows no change and ``feast apply``
changes nothing. Do not edit either file; publish, promote and roll back with embstore.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Float32, Float64, Int64, String

MANIFEST = Path(__file__).with_name("embstore_objects.json")
FEATURE_TYPES = {"int64": Int64, "float64": Float64, "string": String,
                 "array<float32>": Array(Float32), "array<int64>": Array(Int64)}


def entity(name: str, spec: dict) -> Entity:
    value_type = ValueType.INT64 if spec["id_type"] == "int64" else ValueType.STRING
    return Entity(name=name, join_keys=[name], value_type=value_type,
                  description=f"embstore entity {name} ({spec['id_type']} ids)")


def source(name: str, spec: dict):
    """The view's offline rows: a parquet file or dataset, read by Feast's file offline store, or by
    its Spark offline store in a home on embstore's spark engine (``source_kind: spark``)."""
    options = dict(name=f"{name}__source", path=spec["source"], timestamp_field="event_timestamp",
                   created_timestamp_column="created_timestamp")
    if spec.get("source_kind") == "spark":
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

        return SparkSource(file_format="parquet", **options)
    return FileSource(**options)


def feature_view(name: str, spec: dict, entities: dict[str, Entity]) -> FeatureView:
    key = spec["entity"]
    key_type = Int64 if entities[key].value_type == ValueType.INT64 else String
    return FeatureView(
        name=name, entities=[entities[key]], source=source(name, spec), ttl=timedelta(0), online=True,
        schema=[Field(name=key, dtype=key_type)]
        + [Field(name=feature, dtype=FEATURE_TYPES[kind]) for feature, kind in spec["features"]],
        tags={"embstore_set": spec["set"], "embstore_version": str(spec["version"])},
        description=f"embstore {spec['set']}@{spec['version']}",
    )


def feature_service(name: str, spec: dict, views: dict[str, FeatureView]) -> FeatureService:
    return FeatureService(name=name, features=[views[spec["view"]]],
                          tags={"embstore_set": spec["set"], "embstore_alias": spec["alias"]},
                          description=f"embstore {spec['set']}@{spec['alias']}, now {spec['view']}")


def objects(manifest: dict) -> dict[str, object]:
    """Every Feast object the manifest lists, by ``entity:``/``view:``/``service:`` name."""
    entities = {name: entity(name, spec) for name, spec in manifest.get("entities", {}).items()}
    views = {name: feature_view(name, spec, entities) for name, spec in manifest.get("views", {}).items()}
    services = {name: feature_service(name, spec, views) for name, spec in manifest.get("services", {}).items()}
    return {**{f"entity:{k}": v for k, v in entities.items()}, **{f"view:{k}": v for k, v in views.items()},
            **{f"service:{k}": v for k, v in services.items()}}


if MANIFEST.exists():  # Feast collects the module's Feast objects: define each as a module attribute
    globals().update(objects(json.loads(MANIFEST.read_text())))
