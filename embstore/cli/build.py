"""Commands that make versions: run, infer, compose, pipeline, evaluate, materialize."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from embstore.cli.state import State

if TYPE_CHECKING:
    from embstore.refs import VersionInfo


@click.command()
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
@click.option("--until", metavar="TIME", help="train only on interactions before TIME (ISO-8601 or unix seconds); "
              "the version is valid from TIME, so a backfill is one run per cutoff")
@click.option("--engine", help="engine for this run: local or spark (default: the home's engine setting)")
@click.option("--valid-from", "valid_from", metavar="TIME", help="when training rows may start using the vectors "
              "(default: the newest input timestamp, or the build time); refused when earlier than the newest input row")
@click.option("--json", "as_json", is_flag=True, help="print the version as JSON")
@click.pass_obj
def run(state: State, producer: str, set_name: str, inputs, columns, config, retriever, retriever_config,
        entity, promote, align_to, evaluate, gates, until, engine, valid_from, as_json) -> None:
    """Train PRODUCER on the inputs and publish a new version of --set; prints its ref."""
    from embstore.config import parse_key_values
    from embstore.inputs import specs_from_args

    state.catalogue().producer(producer)  # an unknown producer is the first thing to say
    specs = specs_from_args(inputs, columns, files=(engine or state.engine()) == "local")
    store = state.store()
    version = store.run(
        producer, set_name, specs, parse_key_values(config, "--config"),
        promote=promote, entity=entity, retriever=retriever, align_to=align_to, evaluate=list(evaluate), gates=list(gates),
        retriever_config=parse_key_values(retriever_config, "--retriever-config"), until=until, valid_from=valid_from,
        engine=engine,
    )
    published = version if isinstance(version, list) else [version]
    for v in published:
        click.echo(json.dumps(v.as_dict(), default=str) if as_json else v.ref)


@click.command()
@click.argument("ref")
@click.option("--input", "inputs", multiple=True, required=True, metavar="KIND=PATH", help="inputs describing the new entities, e.g. side_info=new_items.csv")
@click.option("--column", "columns", multiple=True, metavar="KIND.CANONICAL=ACTUAL")
@click.option("--out", type=click.Path(dir_okay=False), help="write the inferred vectors to this parquet file (id, vector, and extras such as leaves)")
@click.option("--publish", "publish_to", is_flag=False, flag_value="", default=None, metavar="[SET]",
              help="publish REF's vectors plus the inferred ones as a new version (of REF's set, or SET)")
@click.option("--promote", help="alias to move to the published version")
@click.pass_obj
def infer(state: State, ref: str, inputs, columns, out, publish_to, promote) -> None:
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


@click.command("compose")
@click.argument("name")
@click.argument("refs", nargs=-1, required=True)
@click.option("--weight", "weights", multiple=True, type=float, help="weight of each REF, in order (default 1 each)")
@click.option("--normalize", is_flag=True, help="scale each part's vectors to unit length before weighting")
@click.option("--promote", help="alias to move to the new version, e.g. prod")
@click.option("--align-to", "align_to", help="rotate onto this version first: prev, an alias (prod) or a ref")
@click.option("--evaluate", "evaluate", multiple=True, metavar="NAME:KEY=VALUE,...", help="evaluator and config (repeatable)")
@click.option("--gate", "gates", multiple=True, metavar="METRIC>=X", help="quality gate before --promote (repeatable)")
@click.option("--retriever-config", "retriever_config", multiple=True, metavar="KEY=VALUE", help="retriever config")
@click.option("--json", "as_json", is_flag=True, help="print the version as JSON")
@click.pass_obj
def compose_command(state: State, name: str, refs, weights, normalize, promote, align_to, evaluate, gates,
                    retriever_config, as_json) -> None:
    """Publish set NAME as the concatenation of REF REF ... (ids: their intersection); prints its ref."""
    from embstore.config import parse_key_values

    version = state.store().compose(
        name, list(refs), list(weights) or None, normalize=normalize, promote=promote, align_to=align_to,
        evaluate=list(evaluate), gates=list(gates),
        retriever_config=parse_key_values(retriever_config, "--retriever-config"),
    )
    click.echo(json.dumps(version.as_dict(), default=str) if as_json else version.ref)
    sys.stdout.flush()


@click.command("pipeline")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--check", is_flag=True, help="validate the file (plugins, configs, inputs, gates) and run nothing")
@click.option("--keep-going", is_flag=True, help="run the remaining steps after a step fails (exit status is still 1)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object per step")
@click.pass_obj
def pipeline_command(state: State, file: str, check: bool, keep_going: bool, as_json: bool) -> None:
    """Build the sets a pipeline FILE names, in order: train or compose, evaluate, gate, promote.

    Prints one line per step; a failed step (a failed gate included) prints why and exits 1."""
    from embstore.ops.pipeline import Outcome, load_pipeline, run_pipeline

    if check:
        steps = load_pipeline(file, state.catalogue(), state.store().resolve)
        for step in steps:
            what = f"producer {step.spec.producer}" if step.spec.producer else f"compose {', '.join(step.spec.compose)}"
            gates = f", gates {', '.join(map(str, step.checks.gates))}" if step.checks.gates else ""
            click.echo(f"ok  {step.spec.set}: {what}{gates}" + (f" -> {step.spec.promote}" if step.spec.promote else ""))
        return

    def echo(outcome: Outcome) -> None:
        if as_json:
            click.echo(json.dumps(outcome.as_dict()))
        elif outcome.ok:
            click.echo(" ".join(outcome.refs))
        else:
            click.echo(f"error: {outcome.set}: {outcome.error}", err=True)
        sys.stdout.flush()

    outcomes = run_pipeline(state.store(), file, keep_going=keep_going, echo=echo)
    if not all(o.ok for o in outcomes):
        sys.exit(1)


def echo_results(version: "VersionInfo") -> None:
    """Print a version's stored evaluation and gate results (to stderr: stdout stays the ref)."""
    evaluation = version.metrics.get("evaluation") or {}
    for key in sorted(evaluation):
        value = evaluation[key]
        click.echo(f"  {key:<28} {'n/a' if value is None else f'{value:.6g}'}", err=True)
    for r in (version.metrics.get("gates") or {}).get("results", []):
        click.echo(f"  gate {r['gate']:<24} {r['status']}", err=True)


@click.command("evaluate")
@click.argument("ref")
@click.option("--evaluate", "evaluate", multiple=True, metavar="NAME:KEY=VALUE,...",
              help="evaluator and its config, e.g. hit_rate:path=heldout.csv,k=10 (repeatable)")
@click.option("--gate", "gates", multiple=True, metavar="METRIC>=X", help="quality gate, e.g. 'hr@10>=0.05' (repeatable)")
@click.option("--promote", help="alias to move to REF if every gate passes")
@click.option("--json", "as_json", is_flag=True, help="print the evaluation and gate results as JSON")
@click.pass_obj
def evaluate_command(state: State, ref: str, evaluate, gates, promote, as_json: bool) -> None:
    """Evaluate the published version REF, check gates, and move --promote only if all pass.

    A failed gate prints why (metric, value, threshold) and exits 1."""
    from embstore.versions.gates import Checks, GateError

    store = state.store()
    checks = Checks.prepare(list(evaluate), list(gates), store.catalogue)
    version = store.resolve(ref)
    try:
        done = store.evaluate(version, checks, promote=promote)
    except GateError as exc:
        if as_json:
            click.echo(json.dumps({"ref": exc.version.ref, "evaluation": exc.version.metrics.get("evaluation"),
                                   "gates": exc.version.metrics.get("gates")}, default=str))
        raise
    if as_json:
        click.echo(json.dumps({"ref": done.ref, "aliases": list(done.aliases),
                               "evaluation": done.metrics.get("evaluation"), "gates": done.metrics.get("gates")},
                              default=str))
        return
    click.echo(done.ref + (f" (now {done.set}@{promote})" if promote else ""))
    echo_results(store.resolve(done.ref))
    sys.stdout.flush()


@click.command()
@click.argument("refs", nargs=-1, required=True)
@click.pass_obj
def materialize(state: State, refs) -> None:
    """Rewrite the online store rows of published REFs from their offline files
    (after the online store lost data, e.g. a Redis restart without persistence)."""
    store = state.store()
    for ref in refs:
        version = store.resolve(ref)
        rows = store.materialize(version)
        click.echo(f"{version.ref}: {rows} rows written to the online store")
