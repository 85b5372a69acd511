"""``aif context list|show|use|set|delete``: named targets and credentials, as kubectl's."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from aif.cli import config
from aif.cli.output import CliError, out

app = typer.Typer(
    help="named contexts: where the factory is and which credentials to use", no_args_is_help=True
)
Json = Annotated[bool, typer.Option("--json", help="print JSON")]
Value = Annotated[str | None, typer.Option(show_default=False)]


@app.command("list", help="the contexts of the config file (* marks the current one)")
def list_(json_output: Json = False) -> None:
    path = config.config_path()
    cfg = config.load(path)
    data = {"config": str(path), "current_context": cfg.current_context, "contexts": cfg.contexts}

    def render(c: Console) -> None:
        if not cfg.contexts:
            c.print(f"no context in {path}: aif context set NAME --registry HOST:PORT ...")
            return
        table = Table("", "name", "settings", box=None)
        for name, values in sorted(cfg.contexts.items()):
            shown = ", ".join(f"{k}={v}" for k, v in values.items())
            table.add_row("*" if name == cfg.current_context else "", name, shown)
        c.print(table)

    out(json_output, data, render)


@app.command(help="the settings a context resolves to (the current one by default)")
def show(name: Annotated[str | None, typer.Argument()] = None, json_output: Json = False) -> None:
    chosen, settings = config.resolve(config.load(), name)
    data = {"context": chosen, "settings": settings}
    out(json_output, data, lambda c: c.print("\n".join(f"{k:<18} {v}" for k, v in settings.items())))


@app.command(help="make NAME the current context")
def use(name: str) -> None:
    cfg = config.load()
    if name not in cfg.contexts:
        raise CliError(f"no context {name!r}: aif context set {name} --registry HOST:PORT ...")
    cfg.current_context = name
    path = config.save(cfg)
    print(f"current context: {name} ({path})")


@app.command("set", help="create or change context NAME (only the values given change)")
def set_(
    name: str,
    registry: Value = None,
    gateway: Value = None,
    gateway_oip: Value = None,
    ingestion: Value = None,
    featurestore: Value = None,
    trainer: Value = None,
    evaluator: Value = None,
    monitor: Value = None,
    kafka: Value = None,
    dead_letter_topic: Value = None,
    group_prefix: Value = None,
    token_file: Value = None,
    tls_ca: Value = None,
    tls_cert: Value = None,
    tls_key: Value = None,
    kafka_security_protocol: Value = None,
    kafka_sasl_mechanism: Value = None,
    kafka_username: Value = None,
    kafka_password_file: Value = None,
    kafka_ca: Value = None,
    use_it: Annotated[bool, typer.Option("--use", help="also make it the current context")] = False,
) -> None:
    given = {
        key: value
        for key, value in {
            "registry": registry,
            "gateway": gateway,
            "gateway-oip": gateway_oip,
            "ingestion": ingestion,
            "featurestore": featurestore,
            "trainer": trainer,
            "evaluator": evaluator,
            "monitor": monitor,
            "kafka": kafka,
            "dead-letter-topic": dead_letter_topic,
            "group-prefix": group_prefix,
            "token-file": token_file,
            "tls-ca": tls_ca,
            "tls-cert": tls_cert,
            "tls-key": tls_key,
            "kafka-security-protocol": kafka_security_protocol,
            "kafka-sasl-mechanism": kafka_sasl_mechanism,
            "kafka-username": kafka_username,
            "kafka-password-file": kafka_password_file,
            "kafka-ca": kafka_ca,
        }.items()
        if value is not None
    }
    cfg = config.load()
    cfg.contexts[name] = {**cfg.contexts.get(name, {}), **given}
    if use_it or not cfg.current_context:
        cfg.current_context = name
    path = config.save(cfg)
    print(f"context {name} set ({path}){'; current' if cfg.current_context == name else ''}")


@app.command(help="remove context NAME")
def delete(name: str) -> None:
    cfg = config.load()
    if cfg.contexts.pop(name, None) is None:
        raise CliError(f"no context {name!r}: aif context list shows them", 1)
    if cfg.current_context == name:
        cfg.current_context = ""
    config.save(cfg)
    print(f"context {name} deleted")
