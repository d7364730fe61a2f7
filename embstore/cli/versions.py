"""Commands that list and move versions: versions, promote, rollback, diff."""

from __future__ import annotations

import json
import sys

import click

from embstore.cli.state import State


@click.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def versions(state: State, name: str, as_json: bool) -> None:
    """List the versions of set NAME with status and aliases."""
    rows = state.store().versions(name)
    if as_json:
        click.echo(json.dumps([v.as_dict() for v in rows], default=str))
        return
    click.echo(f"{'version':>7}  {'status':9}  {'producer':12}  {'dim':>4}  {'count':>8}  {'created (UTC)':19}  "
               f"{'valid from (UTC)':19}  aliases")
    for v in rows:
        valid_from = f"{v.valid_from:%Y-%m-%d %H:%M:%S}" if v.valid_from else "-"
        click.echo(
            f"{v.number:>7}  {v.status:9}  {v.producer:12}  {v.dim or '-':>4}  {v.count or '-':>8}  "
            f"{v.created_at:%Y-%m-%d %H:%M:%S}  {valid_from:19}  {','.join(v.aliases)}"
            + (f"  (aligned to {v.aligned_to})" if v.aligned_to else "")
            + (f"  ({v.error.splitlines()[0][:80]})" if v.error and v.status == "failed" else "")
        )


@click.command()
@click.argument("ref")
@click.argument("alias")
@click.pass_obj
def promote(state: State, ref: str, alias: str) -> None:
    """Point ALIAS of the set at REF (set@3, set@canary, set)."""
    v = state.store().promote(ref, alias)
    click.echo(f"{v.set}@{alias} -> {v.ref}")


@click.command()
@click.argument("name")
@click.argument("alias")
@click.pass_obj
def rollback(state: State, name: str, alias: str) -> None:
    """Point ALIAS of set NAME back at the version it named before its last move."""
    v = state.store().rollback(name, alias)
    click.echo(f"{name}@{alias} -> {v.ref}")


def drift_text(report: dict) -> str:
    k = report["k"]
    overlap = report["neighbour_overlap"]
    cos = report["mean_cosine"]
    lines = [
        f"{report['from']} -> {report['to']}  (dimension {report['dims'][0]} -> {report['dims'][1]})",
        f"  ids: {report['shared_ids']} shared, {report['ids_added']} added, {report['ids_removed']} removed",
    ]
    if report["added"]:
        lines.append("  added:   " + ", ".join(map(str, report["added"])) + (" ..." if report["ids_added"] > len(report["added"]) else ""))
    if report["removed"]:
        lines.append("  removed: " + ", ".join(map(str, report["removed"])) + (" ..." if report["ids_removed"] > len(report["removed"]) else ""))
    if cos is None:
        lines.append("  mean cosine of shared ids: n/a (dimensions differ or fewer than 2 shared ids)")
    else:
        lines.append(f"  mean cosine of shared ids: {cos:.4f} after rotating onto {report['from']} "
                     f"({report['mean_cosine_raw']:.4f} as stored)")
    if overlap is not None:
        lines.append(f"  top-{k} neighbour overlap: {overlap:.4f} (exact cosine search, {report['sample']} sampled shared ids)")
    if report.get("stored_in"):
        lines.append(f"  stored in the metrics of {report['stored_in']}")
    return "\n".join(lines)


@click.command("diff")
@click.argument("a")
@click.argument("b")
# defaults as embstore.versions.drift.DRIFT_K and DRIFT_SAMPLE (not imported: --help stays free of numpy)
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="neighbour list length")
@click.option("--sample", type=click.IntRange(min=1), default=1000, show_default=True,
              help="shared ids whose neighbour lists are compared")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-save", is_flag=True, help="do not store the report in the newer version's metrics")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def diff_command(state: State, a: str, b: str, k: int, sample: int, seed: int, no_save: bool, as_json: bool) -> None:
    """Drift from version A to version B: ids added and removed, mean cosine of shared ids
    after alignment, overlap of top-k neighbour lists. Stored in the newer version's metrics."""
    report = state.store().diff(a, b, k=k, sample=sample, seed=seed, save=not no_save)
    click.echo(json.dumps(report, default=str) if as_json else drift_text(report))
    sys.stdout.flush()
