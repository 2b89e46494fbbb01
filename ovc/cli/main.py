"""The ``ovc`` command line (Typer).

ovc stage NAME [-S section.field=value ...]   run one pipeline stage (what dvc.yaml calls)
ovc bench NAME | --list                       run a benchmark, print one JSON object
ovc params [-S ...]                           show the resolved typed config
ovc vocab add|ls|rm, ovc registry ls           registry vocabularies (ovc.cli.commands)
ovc classify VIDEO... --vocab NAME            classify videos with a published model
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import typer
from typer.core import TyperGroup

from ovc.cli.common import ParamsOpt, SetOpt, error_line, load_cfg
from ovc.config import dump_params
from ovc.errors import OvcError


class _OvcGroup(TyperGroup):
    """Every command runs under one handler: an :class:`OvcError` is one red line on stderr, exit 2.

    Anything else is a bug and keeps its traceback. Sub-command groups (``vocab``, ``registry``)
    are invoked from here, so their errors arrive here too.
    """

    def invoke(self, ctx):  # noqa: ANN001, ANN201 - click's signature
        try:
            return super().invoke(ctx)
        except OvcError as e:
            typer.secho(f"error: {error_line(e)}", fg="red", err=True)
            raise typer.Exit(e.exit_code) from None


app = typer.Typer(
    cls=_OvcGroup, add_completion=False, no_args_is_help=True, help="Open-vocabulary multi-label video classification."
)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
def stage(
    name: str | None = typer.Argument(None, help="stage name (see `ovc stage --list`)"),
    params: Path | None = ParamsOpt,
    set_: list[str] | None = SetOpt,
    list_: bool = typer.Option(False, "--list", help="list the stages in pipeline order"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run one pipeline stage; prints its JSON summary on stdout."""
    from ovc.pipeline import STAGES, run_stage

    _setup_logging(verbose)
    if list_ or name is None:
        typer.echo("\n".join(STAGES))
        return
    if name not in STAGES:
        typer.secho(f"error: unknown stage {name!r}; known: {', '.join(STAGES)}", fg="red", err=True)
        raise typer.Exit(2)
    cfg = load_cfg(params, set_)
    summary = run_stage(name, cfg)
    typer.echo(json.dumps(summary, indent=2, default=str))


@app.command()
def bench(
    name: str | None = typer.Argument(None, help="benchmark name"),
    list_: bool = typer.Option(False, "--list", help="list benchmarks"),
    quick: bool = typer.Option(False, "--quick", help="smaller sizes (smoke run)"),
    out: Path | None = typer.Option(None, "--out", help="also write the JSON to this file"),
) -> None:
    """Run a benchmark and print one JSON object (figures, ratios, machine)."""
    from ovc.bench import BENCHES, get_bench, machine_info

    if list_ or name is None:
        for key, (_, desc) in BENCHES.items():
            typer.echo(f"{key:24s} {desc}")
        return
    try:
        fn = get_bench(name)
    except KeyError as e:
        typer.secho(f"error: {e.args[0]}", fg="red", err=True)
        raise typer.Exit(2) from None
    result = {"benchmark": name, **fn(quick=quick), "machine": machine_info()}
    text = json.dumps(result, indent=2, default=str)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    typer.echo(text)


@app.command("params")
def params_cmd(params: Path | None = ParamsOpt, set_: list[str] | None = SetOpt) -> None:
    """Print the resolved configuration (params.yaml + overrides) as YAML."""
    typer.echo(dump_params(load_cfg(params, set_)))


# registry and inference commands (ovc.cli.commands; importing it loads no torch)
from ovc.cli.commands import classify_cmd, registry_app, vocab_app  # noqa: E402

app.add_typer(vocab_app, name="vocab")
app.add_typer(registry_app, name="registry")
app.command("classify")(classify_cmd)
from ovc.cli.collections import mount as _mount_collections  # noqa: E402

_mount_collections(app, registry_app)  # ovc serve, ovc predict, ovc registry promote|rollback


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
