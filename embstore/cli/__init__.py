"""The ``embstore`` command. Exit 0 on success; on error one clear line and exit 1
(2 for usage errors); ``--debug`` shows the traceback.

Commands are grouped by what users do: ``home`` (init, doctor, check, gc, plugins,
plugin new), ``describe`` (a plugin's options), ``build`` (run, infer, compose, pipeline, evaluate, materialize),
``versions`` (versions, promote, rollback, diff), ``read`` (recall, export), ``join``
and ``serve``. Domain modules return data; printing happens here.
"""

from __future__ import annotations

import click

from embstore.cli import build, describe, home, join, read, serve, versions
from embstore.cli.state import Group, State


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", envvar="EMBSTORE_HOME", type=click.Path(file_okay=False), help="store home directory [env EMBSTORE_HOME]")
@click.option("--debug", is_flag=True, help="show tracebacks")
@click.version_option(package_name="embstore")
@click.pass_context
def cli(ctx: click.Context, home: str | None, debug: bool) -> None:
    """embstore: train, version, publish into Feast and recall embeddings."""
    ctx.obj = State(home, debug)


for command in (home.init, home.doctor, home.check, home.gc, home.plugins, home.plugin, describe.describe,
                build.run, build.infer, build.compose_command, build.pipeline_command, build.evaluate_command,
                build.materialize, versions.versions, versions.promote, versions.rollback, versions.diff_command,
                read.recall, read.export, join.join, serve.serve):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="embstore")

