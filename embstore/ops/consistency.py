"""Consistency of a store: compare the registry, Feast and the version files, and list every disagreement.

What a consistent store looks like (each rule is one check; a broken rule is an
*inconsistency*, a failed version's leftovers that ``embstore gc`` would remove
are only *notes*):

registry
  - a set's version numbers run 1..N without gaps; every status is known
  - a published version has its dimension, row count, id type, storage path,
    feature view ``<set>__v<N>`` and checksums of ids.parquet, vectors.npy,
    embeddings.parquet and at least one index file
  - every alias names a published version of its own set, and the alias's last
    history event names that same version
  - no version is left ``building`` by a dead publisher on this host (opening
    the store reaps those; one still there is an inconsistency)
files (published versions)
  - every recorded file exists and matches its sha256
  - vectors.npy is finite float32 of shape (count, dim); ids.parquet has count
    unique ids of the recorded id type
  - embeddings.parquet (Feast's offline source) holds the same ids, rows 0..n-1
    and exactly the same vectors
  - the index loads, holds count vectors, and answers a query with valid rows
Feast
  - each published version's feature view exists, is tagged with its set and
    number, reads that version's embeddings.parquet, keys on the set's entity and
    is listed in the repo's definitions (embstore_objects.json)
  - each alias is a feature service ``<set>__<alias>`` over the version it names,
    in Feast and in the repo's definitions (``embstore check --repair`` mends them)
  - the online store serves exactly the version's vectors for a sample of ids
    (first, last and evenly spaced ones)
  - no feature view or version directory belongs to a version that does not
    exist or that gc already collected
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embstore.backends import files
from embstore.backends.feature_repo import feature_service_name, feature_view_name
from embstore.backends.models import STATUSES
from embstore.processes import HOST, pid_alive
from embstore.errors import EmbstoreError, first_line
from embstore.ids import plain_list

if TYPE_CHECKING:
    from embstore.backends.feature_repo import FeatureRepo
    from embstore.backends.registry import Registry
    from embstore.versions.reader import VersionReader


@dataclass(frozen=True)
class Finding:
    """One disagreement (or, for notes, one harmless fact worth knowing)."""

    area: str  # registry | files | index | feast | online
    ref: str  # set@N, set@alias, or a path
    message: str

    def line(self) -> str:
        return f"{self.area:8}  {self.ref}: {self.message}"


@dataclass
class Report:
    sets: int = 0
    versions: int = 0
    published: int = 0
    failed: int = 0
    building: int = 0
    collected: int = 0
    checked_online_rows: int = 0
    inconsistencies: list[Finding] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.inconsistencies

    def bad(self, area: str, ref: str, message: str) -> None:
        self.inconsistencies.append(Finding(area, ref, message))

    def note(self, area: str, ref: str, message: str) -> None:
        self.notes.append(Finding(area, ref, message))

    def summary(self) -> str:
        return (
            f"{self.sets} sets, {self.versions} versions ({self.published} published, {self.failed} failed"
            f" of which {self.collected} collected, {self.building} building); "
            f"{self.checked_online_rows} online rows compared; "
            f"{len(self.inconsistencies)} inconsistencies, {len(self.notes)} notes"
        )

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("inconsistencies", "notes")}
        out["ok"] = self.ok
        out["inconsistencies"] = [asdict(f) for f in self.inconsistencies]
        out["notes"] = [asdict(f) for f in self.notes]
        return out


def sample_rows(count: int, size: int) -> np.ndarray:
    """About ``size`` rows spread over 0..count-1: the first, the last and evenly spaced ones."""
    if count <= 0 or size <= 0:
        return np.zeros(0, dtype=np.int64)
    if count <= size:
        return np.arange(count, dtype=np.int64)
    return np.unique(np.linspace(0, count - 1, size).round().astype(np.int64))


def check_store(store, sets: Iterable[str] | None = None, *, online_sample: int = 20) -> Report:
    """Check ``sets`` (default: all) of an open EmbeddingStore; never raises for what it finds."""
    return Checker(store.registry, store.reader, store.feast, store.home / "sets").run(sets, online_sample=online_sample)


def check_published_row(v, report: Report) -> bool:

    required = (files.IDS, files.VECTORS)

    problems = []
    if not v.published_at:
        problems.append("no published_at")
    if v.step != "published":
        problems.append(f"step is {v.step!r}")
    if not v.dim or not v.count or v.dim < 1 or v.count < 1:
        problems.append(f"dim {v.dim!r}, count {v.count!r}")
    if v.id_type not in ("int64", "string"):
        problems.append(f"id type {v.id_type!r}")
    if not v.storage_path:
        problems.append("no storage path")
    if v.feature_view != feature_view_name(v.set, v.number):
        problems.append(f"feature view {v.feature_view!r}, expected {feature_view_name(v.set, v.number)!r}")
    missing = [f for f in required if f not in v.checksums]
    if not files.offline_names(v.checksums):
        missing.append(files.OFFLINE)
    if not any(k.startswith(files.INDEX_DIR + "/") for k in v.checksums):
        missing.append(files.INDEX_DIR + "/*")
    if missing:
        problems.append(f"no checksum recorded for {', '.join(missing)}")
    for p in problems:
        report.bad("registry", v.ref, f"published, but {p}")
    return not problems


class Checker:
    """Compares one store's registry, version files, index and Feast, collecting findings in a Report."""

    def __init__(self, registry: "Registry", reader: "VersionReader", feast: "FeatureRepo", sets_dir: Path):
        self.registry, self.reader, self.feast, self.sets_dir = registry, reader, feast, sets_dir

    def run(self, sets: Iterable[str] | None = None, *, online_sample: int = 20) -> Report:
        report = Report()
        names = list(sets) if sets else self.registry.set_names()
        views = self.feature_views(report)
        for name in names:
            report.sets += 1
            try:
                self.check_set(name, views, report, online_sample)
            except EmbstoreError as exc:
                report.bad("registry", name, first_line(exc, with_type=True))
        if not sets:
            self.check_orphans(names, views, report)
        return report

    def check_set(self, name: str, views: dict[str, Any] | None, report: Report, online_sample: int) -> None:
        versions = self.registry.versions(name)
        owners = self.registry.owners(name)
        report.versions += len(versions)
        numbers = [v.number for v in versions]
        if numbers != list(range(1, len(numbers) + 1)):
            report.bad("registry", name, f"version numbers {numbers} are not 1..{len(numbers)}")
        by_number = {v.number: v for v in versions}

        for v in versions:
            if v.status not in STATUSES:
                report.bad("registry", v.ref, f"unknown status {v.status!r}")
                continue
            if v.status == "building":
                report.building += 1
                host, pid = owners.get(v.number, (None, None))
                if host == HOST and pid and not pid_alive(pid):
                    report.bad("registry", v.ref, f"building, but its publisher (pid {pid}) is dead and it was not reaped")
                else:
                    report.note("registry", v.ref, f"building (publisher {host}:{pid} still running)")
                continue
            if v.status == "failed":
                report.failed += 1
                if v.aliases:
                    report.bad("registry", v.ref, f"failed, yet aliases {list(v.aliases)} name it")
                if v.step == "collected":
                    report.collected += 1
                    if v.storage_path and Path(v.storage_path).exists():
                        report.bad("files", v.ref, f"collected by gc, but {v.storage_path} still exists")
                    if views is not None and feature_view_name(name, v.number) in views:
                        report.bad("feast", v.ref, f"collected by gc, but feature view {feature_view_name(name, v.number)} still exists")
                else:
                    leftovers = []
                    if v.storage_path and Path(v.storage_path).exists():
                        leftovers.append("files")
                    if views is not None and feature_view_name(name, v.number) in views:
                        leftovers.append("feature view")
                    if leftovers:
                        report.note("registry", v.ref, f"failed; leftovers ({', '.join(leftovers)}) for embstore gc")
                continue
            if v.status == "retired":
                if v.aliases:
                    report.bad("registry", v.ref, f"retired, yet aliases {list(v.aliases)} name it")
                continue
            report.published += 1
            if check_published_row(v, report):
                files_ok = self.check_files(v, report)
                self.check_feast(v, views, report, online_sample if files_ok else 0)

        self.check_aliases(name, by_number, report)
        published = [v.number for v in versions if v.status == "published"]
        if published:
            try:
                latest = self.registry.resolve(name).number
                if latest != max(published):
                    report.bad("registry", name, f"latest resolves to @{latest}, expected @{max(published)}")
            except EmbstoreError as exc:
                report.bad("registry", name, f"latest does not resolve: {first_line(exc, with_type=True)}")

    def check_aliases(self, name: str, by_number: dict, report: Report) -> None:
        current: dict[str, int] = {}
        for v in by_number.values():
            for a in v.aliases:
                current[a] = v.number
                if v.status != "published":
                    report.bad("registry", f"{name}@{a}", f"names {v.ref}, which is {v.status}")
        last: dict[str, int] = {}
        for event in self.registry.alias_history(name):
            last[event["alias"]] = event["version"]
        for alias, number in current.items():
            if last.get(alias) != number:
                report.bad("registry", f"{name}@{alias}", f"names @{number}, but its last history event names @{last.get(alias)}")
            try:
                resolved = self.registry.resolve(f"{name}@{alias}").number
                if resolved != number:
                    report.bad("registry", f"{name}@{alias}", f"resolves to @{resolved}, alias row names @{number}")
            except EmbstoreError as exc:
                report.bad("registry", f"{name}@{alias}", f"does not resolve: {first_line(exc, with_type=True)}")
        for alias in set(last) - set(current):
            report.bad("registry", f"{name}@{alias}", "has history but no alias row")
        self.check_services(name, {a: by_number[n] for a, n in current.items()}, report)

    def check_services(self, name: str, aliases: dict[str, Any], report: Report) -> None:
        """Each alias is a Feast FeatureService ``<set>__<alias>`` over the version it names, and the
        repo's manifest says the same (what ``feast apply`` would apply)."""
        if self.services is None:
            return
        listed = self.feast.manifest()["services"]
        for alias, v in aliases.items():
            service_name = feature_service_name(name, alias)
            service = self.services.get(service_name)
            views = [p.name for p in service.feature_view_projections] if service is not None else None
            if views != [v.feature_view]:
                report.bad("feast", f"{name}@{alias}", f"feature service {service_name} serves {views}, "
                           f"the alias names {v.feature_view} (embstore check --repair)")
            if listed.get(service_name, {}).get("view") != v.feature_view:
                report.bad("feast", f"{name}@{alias}", f"the repo's definitions list {service_name} as "
                           f"{listed.get(service_name)}, the alias names {v.feature_view} (embstore check --repair)")
        for service_name, service in self.services.items():
            tags = dict(service.tags or {})
            if tags.get("embstore_set") == name and tags.get("embstore_alias") not in aliases:
                report.bad("feast", service_name, f"feature service of {name}@{tags.get('embstore_alias')}, "
                           "which is not an alias (embstore check --repair)")

    def check_files(self, v, report: Report) -> bool:
        """True when the files are intact (the online rows can then be compared with them)."""
        import pyarrow as pa

        directory = Path(v.storage_path)
        before = len(report.inconsistencies)
        try:
            files.verify(directory, v.checksums)
        except EmbstoreError as exc:
            report.bad("files", v.ref, first_line(exc, with_type=True))
            return False
        try:
            vectors = np.load(directory / files.VECTORS, mmap_mode="r")
            if vectors.dtype != np.float32 or vectors.shape != (v.count, v.dim):
                report.bad("files", v.ref, f"vectors.npy is {vectors.dtype} {vectors.shape}, registry says float32 ({v.count}, {v.dim})")
                return False
            if not np.isfinite(vectors).all():
                report.bad("files", v.ref, "vectors.npy holds NaN or inf")
            ids_col = pq.read_table(directory / files.IDS).column("id")
            if len(ids_col) != v.count:
                report.bad("files", v.ref, f"ids.parquet has {len(ids_col)} ids, registry says {v.count}")
                return False
            id_type = "int64" if pa.types.is_integer(ids_col.type) else "string"
            if id_type != v.id_type:
                report.bad("files", v.ref, f"ids.parquet holds {id_type} ids, registry says {v.id_type}")
            ids = ids_col.to_pylist()
            if len(set(ids)) != len(ids):
                report.bad("files", v.ref, "ids.parquet has duplicate ids")
            offline = files.offline_table(files.offline_location(directory, v.checksums))
            needed = {v.entity, "event_timestamp", "created_timestamp", "row", "embedding"}
            if not needed <= set(offline.column_names):
                report.bad("files", v.ref, f"embeddings.parquet lacks columns {sorted(needed - set(offline.column_names))}")
                return False
            if offline.num_rows != v.count:
                report.bad("files", v.ref, f"embeddings.parquet has {offline.num_rows} rows, registry says {v.count}")
                return False
            rows = offline.column("row").to_numpy()
            if not np.array_equal(rows, np.arange(v.count)):
                report.bad("files", v.ref, "embeddings.parquet rows are not 0..n-1 in order")
                return False
            if offline.column(v.entity).to_pylist() != ids:
                report.bad("files", v.ref, "embeddings.parquet ids differ from ids.parquet")
            emb = offline.column("embedding").combine_chunks()
            flat = emb.flatten().to_numpy(zero_copy_only=False)
            if flat.size != v.count * v.dim or not np.array_equal(flat.reshape(v.count, v.dim), np.asarray(vectors)):
                report.bad("files", v.ref, "embeddings.parquet vectors differ from vectors.npy")
        except Exception as exc:  # noqa: BLE001 - an unreadable file is a finding, not a crash
            report.bad("files", v.ref, f"cannot read the version's files: {first_line(exc, with_type=True)}")
            return False
        try:
            index = self.reader.index(v)
            size = len(index) if hasattr(index, "__len__") else None
            if size is not None and size != v.count:
                report.bad("index", v.ref, f"index holds {size} vectors, registry says {v.count}")
            sample = sample_rows(v.count, 5)
            found, _ = index.search(np.asarray(vectors[sample], dtype=np.float32), 1)
            if found.shape[0] != len(sample) or ((found[:, 0] < 0) | (found[:, 0] >= v.count)).any():
                report.bad("index", v.ref, f"a query of stored vectors returned rows {found[:, 0].tolist()} (count {v.count})")
        except Exception as exc:  # noqa: BLE001
            report.bad("index", v.ref, f"index does not load or answer: {first_line(exc, with_type=True)}")
        return len(report.inconsistencies) == before

    def feature_views(self, report: Report) -> dict[str, Any] | None:
        try:
            self.services = self.feast.feature_services()
            return self.feast.feature_views()
        except Exception as exc:  # noqa: BLE001
            report.bad("feast", str(self.feast.repo), f"cannot list Feast feature views: {first_line(exc, with_type=True)}")
            self.services = None
            return None

    def check_feast(self, v, views: dict[str, Any] | None, report: Report, online_sample: int) -> None:
        if views is None:
            return
        fv = views.get(v.feature_view)
        if fv is None:
            report.bad("feast", v.ref, f"feature view {v.feature_view} is missing")
            return
        tags = dict(fv.tags or {})
        if tags.get("embstore_set") != v.set or tags.get("embstore_version") != str(v.number):
            report.bad("feast", v.ref, f"feature view {fv.name} is tagged {tags}")
        want = str(files.offline_location(Path(v.storage_path), v.checksums).resolve())
        path = getattr(fv.batch_source, "path", None)
        if path != want:
            report.bad("feast", v.ref, f"feature view {fv.name} reads {path}, expected {want}")
        if list(getattr(fv, "entities", [])) != [v.entity]:
            report.bad("feast", v.ref, f"feature view {fv.name} keys on {list(fv.entities)}, expected [{v.entity!r}]")
        if v.feature_view not in self.feast.manifest()["views"]:
            report.bad("feast", v.ref, f"the repo's definitions do not list {fv.name}, so `feast apply` would "
                       "delete it (embstore check --repair)")
        if online_sample <= 0:
            return
        try:
            loaded = self.reader.load(v)
            rows = sample_rows(v.count, online_sample)
            ids = plain_list(loaded.ids[rows])
            online = self.feast.online_vectors(v.feature_view, v.entity, ids)
        except Exception as exc:  # noqa: BLE001
            report.bad("online", v.ref, f"cannot read online rows: {first_line(exc, with_type=True)}")
            return
        report.checked_online_rows += len(ids)
        for r, i, got in zip(rows.tolist(), ids, online):
            if got is None:
                report.bad("online", v.ref, f"online store has no row for id {i!r}")
                return
            if not np.array_equal(np.asarray(got, dtype=np.float32), np.asarray(loaded.vectors[r], dtype=np.float32)):
                report.bad("online", v.ref, f"online vector of id {i!r} differs from vectors.npy")
                return

    def check_orphans(self, names: list[str], views: dict[str, Any] | None, report: Report) -> None:
        known = set(names)
        numbers = {name: {v.number for v in self.registry.versions(name)} for name in names}
        if views is not None:
            for fv_name, fv in views.items():
                tags = dict(fv.tags or {})
                set_name, number = tags.get("embstore_set"), tags.get("embstore_version")
                if set_name is None:
                    continue  # not embstore's
                if set_name not in known or not str(number).isdigit() or int(number) not in numbers[set_name]:
                    report.bad("feast", fv_name, f"feature view of {set_name}@{number}, which the registry does not know")
        sets_dir = self.sets_dir
        if not sets_dir.is_dir():
            return
        for set_dir in sorted(p for p in sets_dir.iterdir() if p.is_dir()):
            if set_dir.name not in known:
                report.bad("files", str(set_dir), "directory of a set the registry does not know")
                continue
            for vdir in sorted(p for p in set_dir.iterdir() if p.is_dir()):
                m = re.fullmatch(r"v(\d+)", vdir.name)
                if not m or int(m.group(1)) not in numbers[set_dir.name]:
                    report.bad("files", str(vdir), "directory of a version the registry does not know")
