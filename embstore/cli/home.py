"""Commands that set up and look after a home: init, doctor, check, gc, plugins, plugin new."""

from __future__ import annotations

import json
import sys

import click

from embstore.cli.state import State


@click.command()
@click.option("--registry-url", help="SQLAlchemy URL of the version registry (default: sqlite file in HOME)")
@click.option("--postgres", "postgres_url", metavar="URL", help="team backend: PostgreSQL for both registries, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test")
@click.option("--redis", "redis_url", metavar="URL", help="team backend: Redis for Feast's online store, e.g. redis://127.0.0.1:6379/0")
@click.option("--schema", help="team backend: PostgreSQL schema of embstore's tables (default embstore)")
@click.option("--project", help="Feast project name (default embstore)")
@click.option("--engine", help="engine that reads inputs and trains: local (default) or spark")
@click.option("--spark-master", "spark_master", metavar="URL", help="spark engine: master URL, e.g. local[2] or spark://head:7077")
@click.option("--spark-conf", "spark_conf", multiple=True, metavar="KEY=VALUE", help="spark engine: a Spark conf entry (repeatable)")
@click.pass_obj
def init(state: State, registry_url, postgres_url, redis_url, schema, project, engine, spark_master, spark_conf) -> None:
    """Create a store home: settings, Feast repo, registry schema.

    With --postgres and --redis the store uses the team backend (PostgreSQL + Redis); with
    --engine spark runs read inputs and train on Spark (--spark-master, --spark-conf)."""
    from embstore.store import EmbeddingStore

    settings = {k: v for k, v in {"registry_url": registry_url, "postgres_url": postgres_url, "redis_url": redis_url,
                                  "schema": schema, "project": project, "engine": engine}.items() if v}
    if postgres_url or redis_url:
        settings["backend"] = "team"
    if spark_master or spark_conf:
        if (engine or "spark") != "spark":
            raise click.UsageError("--spark-master and --spark-conf go with --engine spark")
        settings["engine"] = "spark"
        conf = dict(c.split("=", 1) for c in spark_conf if "=" in c)
        if len(conf) != len(spark_conf):
            raise click.UsageError("--spark-conf takes KEY=VALUE")
        settings["engine_config"] = {**({"master": spark_master} if spark_master else {}), **({"conf": conf} if conf else {})}
    store = EmbeddingStore.init(state.home, **settings)
    click.echo(f"initialised {store.home}")


@click.command()
@click.pass_obj
def doctor(state: State) -> None:
    """Check the configured backends; exit 1 naming what is unreachable or misconfigured."""
    from embstore.ops.doctor import diagnose

    checks = diagnose(state.home)
    for check in checks:
        click.echo(check.line())
    if not all(c.ok for c in checks):
        sys.exit(1)


@click.command()
@click.argument("sets", nargs=-1)
@click.option("--online-sample", type=click.IntRange(min=0), default=20, show_default=True,
              help="ids per version whose online (Feast) vectors are compared; 0 skips the online store")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@click.option("--notes", "show_notes", is_flag=True, help="also list notes (failed versions' leftovers, builds in progress)")
@click.option("--repair", is_flag=True, help="first make Feast's feature views and services and the repo's "
              "definitions match the registry (what it changed is printed), then check")
@click.pass_obj
def check(state: State, sets, online_sample: int, as_json: bool, show_notes: bool, repair: bool) -> None:
    """Compare the registry, Feast (feature views, services, online rows) and the version files with
    their checksums; list every inconsistency and exit 1 if there is any."""
    from embstore.ops.consistency import check_store

    store = state.store()
    try:
        if repair:
            for line in store.repair_feast() or ["Feast already matched the registry"]:
                click.echo(f"repair    {line}", err=as_json)
        report = check_store(store, sets or None, online_sample=online_sample)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(report.as_dict(), default=str))
    else:
        for f in report.inconsistencies:
            click.echo(f.line())
        if show_notes:
            for f in report.notes:
                click.echo("note  " + f.line())
        click.echo(("ok: " if report.ok else "INCONSISTENT: ") + report.summary())
    if not report.ok:
        sys.exit(1)


@click.command()
@click.pass_obj
def gc(state: State) -> None:
    """Delete the files and Feast views of failed versions (published data untouched)."""
    removed = state.store().gc()
    click.echo("removed " + (", ".join(removed) if removed else "nothing"))


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def plugins(state: State, as_json: bool) -> None:
    """List loaded plugins, their versions and what each provides."""
    installed = state.catalogue()
    rows = [p.as_dict() for p in installed.plugins.values()]
    for p in rows:  # producers that embed unseen entities (embstore infer)
        p["infer"] = [n for n in p["producers"] if installed.producers[n].can_infer()]
    if as_json:
        click.echo(json.dumps(rows))
        return
    for p in rows:
        provides = [f"producer:{n}" + (" (infer)" if n in p["infer"] else "") for n in p["producers"]]
        provides += [f"retriever:{n}" for n in p["retrievers"]]
        provides += [f"evaluator:{n}" for n in p.get("evaluators", [])]
        provides += [f"engine:{n}" for n in p.get("engines", [])]
        click.echo(f"{p['name']:<16} {p['version']:<10} {', '.join(provides) or '-':<40} hooks: {', '.join(p['hooks'])}  [{p['source']}: {p['module']}]")


@click.group()
def plugin() -> None:
    """Write plugins: scaffold a producer or retriever package for your team."""


@plugin.command("new")
@click.argument("name")
@click.option("--kind", type=click.Choice(["producer", "retriever"]), default="producer", show_default=True,
              help="what the plugin provides")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=".", show_default=True,
              help="parent directory; the package is written to DIR/embstore-NAME")
def new(name: str, kind: str, directory: str) -> None:
    """Write an installable plugin package for NAME (a working skeleton, tests, README)."""
    from embstore.ops.scaffold import names_for, scaffold

    target = scaffold(name, kind, directory)
    names = names_for(name, kind)
    click.echo(f"wrote {kind} plugin {name!r} to {target}")
    for path in sorted(p for p in target.rglob("*") if p.is_file()):
        click.echo(f"  {path.relative_to(target)}")
    click.echo("next:")
    click.echo(f"  cd {target}")
    click.echo("  pip install -e '.[test]'     # into the environment where embstore is installed")
    click.echo(f"  embstore plugins              # {name} should be listed")
    click.echo("  pytest                        # runs the conformance kit on it")
    click.echo(f"  edit src/{names['module']}/__init__.py (guide: embstore's docs/plugins.md)")
