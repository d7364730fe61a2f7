"""The ``embstore`` command. Exit 0 on success; on error one clear line and exit 1
(2 for usage errors); ``--debug`` shows the traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from embstore.errors import EmbstoreError


class _State:
    def __init__(self, home: str | None, debug: bool):
        self.home = home
        self.debug = debug

    def store(self):
        from embstore.store import EmbeddingStore

        return EmbeddingStore(self.home)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


class _Group(click.Group):
    """Turns embstore's own errors into one line (traceback only with --debug)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EmbstoreError as exc:
            if ctx.params.get("debug"):
                raise
            _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # an unexpected failure is still one line, with the way to see more
            if ctx.params.get("debug"):
                raise
            _fail(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", envvar="EMBSTORE_HOME", type=click.Path(file_okay=False), help="store home directory [env EMBSTORE_HOME]")
@click.option("--debug", is_flag=True, help="show tracebacks")
@click.version_option(package_name="embstore")
@click.pass_context
def cli(ctx: click.Context, home: str | None, debug: bool) -> None:
    """embstore: train, version, publish into Feast and recall embeddings."""
    ctx.obj = _State(home, debug)


@cli.command()
@click.option("--registry-url", help="SQLAlchemy URL of the version registry (default: sqlite file in HOME)")
@click.option("--postgres", "postgres_url", metavar="URL", help="team backend: PostgreSQL for both registries, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test")
@click.option("--redis", "redis_url", metavar="URL", help="team backend: Redis for Feast's online store, e.g. redis://127.0.0.1:6379/0")
@click.option("--schema", help="team backend: PostgreSQL schema of embstore's tables (default embstore)")
@click.option("--project", help="Feast project name (default embstore)")
@click.pass_obj
def init(state: _State, registry_url, postgres_url, redis_url, schema, project) -> None:
    """Create a store home: settings, Feast repo, registry schema.

    With --postgres and --redis the store uses the team backend (PostgreSQL + Redis)."""
    from embstore.store import EmbeddingStore

    settings = {k: v for k, v in {"registry_url": registry_url, "postgres_url": postgres_url, "redis_url": redis_url,
                                  "schema": schema, "project": project}.items() if v}
    if postgres_url or redis_url:
        settings["backend"] = "team"
    store = EmbeddingStore.init(state.home, **settings)
    click.echo(f"initialised {store.home}")


@cli.command()
@click.argument("producer")
@click.option("--set", "set_name", required=True, help="embedding set to add a version to")
@click.option("--input", "inputs", multiple=True, metavar="KIND=PATH", help="input file; KIND is interactions, edges, side_info, features or table")
@click.option("--column", "columns", multiple=True, metavar="KIND.CANONICAL=ACTUAL", help="map a canonical column to the file's name, e.g. interactions.item_id=movieId")
@click.option("--config", "config", multiple=True, metavar="KEY=VALUE", help="producer config")
@click.option("--retriever", help="retriever plugin for the index (default from settings: faiss)")
@click.option("--retriever-config", "retriever_config", multiple=True, metavar="KEY=VALUE", help="retriever config, e.g. index=hnsw")
@click.option("--entity", help="join key of the set in Feast (default: the producer's, e.g. item_id)")
@click.option("--promote", help="alias to move to the new version once published, e.g. prod")
@click.option("--align-to", "align_to", help="rotate the new vectors onto this version first: prev, an alias (prod), a number or set@ref")
@click.option("--evaluate", "evaluate", multiple=True, metavar="NAME:KEY=VALUE,...", help="evaluator and its config, e.g. hit_rate:path=heldout.csv,k=10")
@click.option("--gate", "gates", multiple=True, metavar="METRIC>=X", help="quality gate the version must pass before --promote moves, e.g. 'hr@10>=0.05'")
@click.option("--json", "as_json", is_flag=True, help="print the version as JSON")
@click.pass_obj
def run(state: _State, producer: str, set_name: str, inputs, columns, config, retriever, retriever_config,
        entity, promote, align_to, evaluate, gates, as_json) -> None:
    """Train PRODUCER on the inputs and publish a new version of --set; prints its ref."""
    from embstore.config import parse_key_values
    from embstore.inputs import Inputs, specs_from_args
    from embstore.plugins import get_registry

    get_registry().producer(producer)  # an unknown producer is the first thing to say
    specs = specs_from_args(inputs, columns)
    store = state.store()
    version = store.run(
        producer, set_name, Inputs(specs), parse_key_values(config, "--config"),
        promote=promote, entity=entity, retriever=retriever, align_to=align_to, evaluate=list(evaluate), gates=list(gates),
        retriever_config=parse_key_values(retriever_config, "--retriever-config"),
    )
    published = version if isinstance(version, list) else [version]
    for v in published:
        click.echo(json.dumps(v.as_dict(), default=str) if as_json else v.ref)


@cli.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def versions(state: _State, name: str, as_json: bool) -> None:
    """List the versions of set NAME with status and aliases."""
    rows = state.store().versions(name)
    if as_json:
        click.echo(json.dumps([v.as_dict() for v in rows], default=str))
        return
    click.echo(f"{'version':>7}  {'status':9}  {'producer':12}  {'dim':>4}  {'count':>8}  {'created (UTC)':19}  aliases")
    for v in rows:
        click.echo(
            f"{v.number:>7}  {v.status:9}  {v.producer:12}  {v.dim or '-':>4}  {v.count or '-':>8}  "
            f"{v.created_at:%Y-%m-%d %H:%M:%S}  {','.join(v.aliases)}"
            + (f"  (aligned to {v.aligned_to})" if v.aligned_to else "")
            + (f"  ({v.error.splitlines()[0][:80]})" if v.error and v.status == "failed" else "")
        )


@cli.command()
@click.argument("ref")
@click.argument("alias")
@click.pass_obj
def promote(state: _State, ref: str, alias: str) -> None:
    """Point ALIAS of the set at REF (set@3, set@canary, set)."""
    v = state.store().promote(ref, alias)
    click.echo(f"{v.set}@{alias} -> {v.ref}")


@cli.command()
@click.argument("name")
@click.argument("alias")
@click.pass_obj
def rollback(state: _State, name: str, alias: str) -> None:
    """Point ALIAS of set NAME back at the version it named before its last move."""
    v = state.store().rollback(name, alias)
    click.echo(f"{name}@{alias} -> {v.ref}")


@cli.command()
@click.argument("ref")
@click.argument("out", type=click.Path(dir_okay=False))
@click.pass_obj
def export(state: _State, ref: str, out: str) -> None:
    """Write REF's vectors to OUT.parquet (columns id, vector)."""
    path = state.store().export(ref, out)
    click.echo(str(path))


@cli.command()
@click.argument("ref")
@click.option("--id", "ids", multiple=True, required=True, help="query id (repeat for several)")
@click.option("-k", "k", type=int, default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def recall(state: _State, ref: str, ids, k: int, as_json: bool) -> None:
    """Nearest neighbours of each --id in REF."""
    store = state.store()
    version = store.resolve(ref)
    typed = [int(i) if version.id_type == "int64" and _is_int(i) else i for i in ids]
    results = store.recall(version, ids=typed, k=k)  # the version printed is the one that answered
    if as_json:
        click.echo(json.dumps({"ref": version.ref, "results": [r.as_dict() for r in results]}, default=str))
        return
    for r in results:
        click.echo(f"{r.query!s} ({version.ref}):")
        for rank, (i, s) in enumerate(zip(r.ids, r.scores), 1):
            click.echo(f"  {rank:>3}. {i!s:<24} {s:.4f}")


def _is_int(text: str) -> bool:
    try:
        int(text)
        return True
    except ValueError:
        return False


@cli.command()
@click.argument("ref")
@click.option("--input", "inputs", multiple=True, required=True, metavar="KIND=PATH", help="inputs describing the new entities, e.g. side_info=new_items.csv")
@click.option("--column", "columns", multiple=True, metavar="KIND.CANONICAL=ACTUAL")
@click.option("--out", type=click.Path(dir_okay=False), help="write the inferred vectors to this parquet file (id, vector, and extras such as leaves)")
@click.option("--publish", "publish_to", is_flag=False, flag_value="", default=None, metavar="[SET]",
              help="publish REF's vectors plus the inferred ones as a new version (of REF's set, or SET)")
@click.option("--promote", help="alias to move to the published version")
@click.pass_obj
def infer(state: _State, ref: str, inputs, columns, out, publish_to, promote) -> None:
    """Embed entities REF never saw (cold start) with its producer's saved model."""
    from embstore.inputs import Inputs, specs_from_args

    store = state.store()
    emb = store.infer(ref, Inputs(specs_from_args(inputs, columns)))
    click.echo(f"inferred {len(emb)} vectors of dim {emb.dim}", err=True)
    if out:
        import pyarrow as pa
        import pyarrow.parquet as pq

        ids = pa.array(emb.ids.tolist(), type=pa.int64() if emb.ids.dtype.kind in "iu" else pa.string())
        columns = {"id": ids, "vector": pa.array(list(emb.vectors), type=pa.list_(pa.float32()))}
        for name, arr in emb.extras.items():  # e.g. gbdt_leaf's leaves
            columns[name] = pa.array(list(arr) if arr.ndim > 1 else arr)
        pq.write_table(pa.table(columns), out)
        click.echo(out)
    if publish_to is not None:
        v = store.publish_inferred(ref, emb, set_name=publish_to or None, promote=promote)
        click.echo(v.ref)
    elif not out:
        raise click.UsageError("say what to do with the vectors: --out FILE and/or --publish")


@cli.command()
@click.argument("refs", nargs=-1, required=True)
@click.pass_obj
def materialize(state: _State, refs) -> None:
    """Rewrite the online store rows of published REFs from their offline files
    (after the online store lost data, e.g. a Redis restart without persistence)."""
    store = state.store()
    for ref in refs:
        version = store.resolve(ref)
        rows = store.materialize(version)
        click.echo(f"{version.ref}: {rows} rows written to the online store")


@cli.command()
@click.pass_obj
def gc(state: _State) -> None:
    """Delete the files and Feast views of failed versions (published data untouched)."""
    removed = state.store().gc()
    click.echo("removed " + (", ".join(removed) if removed else "nothing"))


@cli.command()
@click.pass_obj
def doctor(state: _State) -> None:
    """Check the configured backends; exit 1 naming what is unreachable or misconfigured."""
    from embstore.doctor import diagnose

    checks = diagnose(state.home)
    for check in checks:
        click.echo(check.line())
    if not all(c.ok for c in checks):
        sys.exit(1)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def plugins(as_json: bool) -> None:
    """List loaded plugins, their versions and what each provides."""
    from embstore.plugins import get_registry

    registry = get_registry()
    rows = [p.as_dict() for p in registry.plugins.values()]
    for p in rows:  # producers that embed unseen entities (embstore infer)
        p["infer"] = [n for n in p["producers"] if registry.producers[n].can_infer()]
    if as_json:
        click.echo(json.dumps(rows))
        return
    for p in rows:
        provides = [f"producer:{n}" + (" (infer)" if n in p["infer"] else "") for n in p["producers"]]
        provides += [f"retriever:{n}" for n in p["retrievers"]]
        provides += [f"evaluator:{n}" for n in p.get("evaluators", [])]
        click.echo(f"{p['name']:<16} {p['version']:<10} {', '.join(provides) or '-':<40} hooks: {', '.join(p['hooks'])}  [{p['source']}: {p['module']}]")


from embstore.scaffold import plugin as _plugin_group
cli.add_command(_plugin_group)


from embstore.server import serve as _serve
cli.add_command(_serve)


from embstore.consistency import check as _check
cli.add_command(_check)


from embstore.alignment import cmd as _diff
cli.add_command(_diff)
from embstore.composite import cmd as _compose
cli.add_command(_compose)
from embstore.evaluation import cmd as _evaluate
cli.add_command(_evaluate)
from embstore.pipeline import cmd as _pipeline
cli.add_command(_pipeline)


def main() -> None:
    cli(prog_name="embstore")


if __name__ == "__main__":
    main()
