"""The ``aif`` command: its root options, the commands, and how an error ends it."""

from __future__ import annotations

import logging
import sys
from importlib import metadata
from typing import Annotated, Any

import typer
from typer._click.core import Context
from typer.core import TyperCommand, TyperGroup

from aif.cli import audit as audit_cmd
from aif.cli import context, dlq, drift, ingest, lineage, models, predict, status, train, usecase
from aif.cli.output import EXIT_CODES, CliError, err_console
from aif.cli.remote import Pending

# aiokafka logs each failed connection attempt; the command says it once, in its own line.
logging.getLogger("aiokafka").addHandler(logging.NullHandler())
logging.getLogger("aiokafka").propagate = False


class AifGroup(TyperGroup):
    """Turns a :class:`CliError` raised anywhere below into one line and its exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as exc:
            err_console().print(f"aif: {exc.message}", markup=False)
            raise typer.Exit(exc.code) from None


def _version(value: bool) -> None:
    if value:
        try:
            version = metadata.version("aifactory")
        except metadata.PackageNotFoundError:
            version = "unknown (not installed: pip install -e .)"
        sys.stdout.write(f"aif {version}\n")
        raise typer.Exit(0)


app = typer.Typer(
    cls=AifGroup,
    name="aif",
    help="AI Factory command line: run, onboard, feed, train, govern and watch a factory.",
    epilog=EXIT_CODES + " Docs: docs/cli.md.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

Target = Annotated[str | None, typer.Option(metavar="HOST:PORT", show_default=False)]


@app.callback()
def root(
    ctx: typer.Context,
    context_name: Annotated[
        str | None,
        typer.Option("--context", envvar="AIF_CONTEXT", help="context of the config file (aif context list)"),
    ] = None,
    registry: Annotated[
        str | None, typer.Option("--registry", envvar="AIF_REGISTRY_TARGET", metavar="HOST:PORT")
    ] = None,
    gateway: Target = None,
    gateway_oip: Target = None,
    ingestion: Target = None,
    featurestore: Target = None,
    trainer: Annotated[
        str | None, typer.Option("--trainer", envvar="AIF_TRAINER_TARGET", metavar="HOST:PORT")
    ] = None,
    evaluator: Target = None,
    monitor: Target = None,
    kafka: Annotated[
        str | None, typer.Option(metavar="HOST:PORT", help="Kafka bootstrap (status, dlq)")
    ] = None,
    token: Annotated[
        str | None, typer.Option(envvar="AIF_TOKEN", help="bearer token (prefer --token-file)")
    ] = None,
    token_file: Annotated[
        str | None, typer.Option(envvar="AIF_TOKEN_FILE", help="file holding the bearer token")
    ] = None,
    tls_ca: Annotated[str | None, typer.Option(help="CA of the services' certificates: TLS")] = None,
    tls_cert: Annotated[str | None, typer.Option(help="client certificate (mutual TLS)")] = None,
    tls_key: Annotated[str | None, typer.Option(help="client key (mutual TLS)")] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Targets and credentials come from these flags, then the context, then the defaults."""
    flags = {
        "registry": registry,
        "gateway": gateway,
        "gateway-oip": gateway_oip,
        "ingestion": ingestion,
        "featurestore": featurestore,
        "trainer": trainer,
        "evaluator": evaluator,
        "monitor": monitor,
        "kafka": kafka,
        "token-file": token_file,
        "tls-ca": tls_ca,
        "tls-cert": tls_cert,
        "tls-key": tls_key,
    }
    # Read on first use (aif.cli.remote.remote): offline commands (usecase new/validate,
    # token, context) work without a config file, or with a broken one.
    ctx.obj = Pending(context_name, flags, token)


@app.command(help="run the factory's main job end to end on a fresh factory (make demo)")
def demo() -> None:
    # Only demo and up need the infrastructure, stack and loop modules (pandas, aiokafka...).
    from aif.cli import demo as demo_module

    raise typer.Exit(demo_module.run())


@app.command(help="run infrastructure and services (under supervisord) in the foreground until Ctrl-C")
def up() -> None:
    from aif.cli import up as up_module

    raise typer.Exit(up_module.up())


class _PassThrough(TyperCommand):
    """A command whose arguments go to its own parser untouched.

    click drops a ``--`` while parsing, and argparse needs it before a value that begins with
    ``-`` (a base64url key id does, 1 time in 64)."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        ctx.args = list(args)
        return ctx.args


@app.command(
    cls=_PassThrough,
    help="development tokens (keygen, issue, revoke, service) and mTLS certificates (certs); "
    "aif token --help for its own options",
    add_help_option=False,
)
def token(ctx: typer.Context) -> None:
    import argparse

    from aif.cli import token as token_module

    # `aif token` keeps its own argparse interface (aif/cli/token.py).
    parser = argparse.ArgumentParser(prog="aif")
    token_module.add_parser(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(["token", *ctx.args])
    except SystemExit as exc:  # --help, or a bad argument (argparse has said why)
        raise typer.Exit(exc.code if isinstance(exc.code, int) else 2) from None
    raise typer.Exit(token_module.run(args))


app.add_typer(context.app, name="context")
app.command(name="status", help=status.__doc__)(status.status)
app.add_typer(usecase.app, name="usecase")
app.command(name="ingest", help=ingest.HELP)(ingest.ingest)
app.command(name="train", help=train.HELP)(train.train)
app.add_typer(models.app, name="models")
app.command(name="lineage", help=lineage.HELP)(lineage.lineage)
app.add_typer(drift.app, name="drift")
app.add_typer(dlq.app, name="dlq")
app.command(name="predict", help=predict.HELP)(predict.predict)
app.add_typer(audit_cmd.app, name="audit")
