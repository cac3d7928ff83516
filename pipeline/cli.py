"""The ``privprep`` command line (SPEC §3). Exit codes come from one place, :func:`main`:
0 success, 1 handled failure, 2 usage/config/input/key error; anything else is a bug (70).
User errors print one line to stderr; ``--debug`` anywhere on the line shows tracebacks."""

from __future__ import annotations

import json
import logging
import os
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from privprep.schemas.errors import PrivprepError, UsageError
from privprep.schemas.purposes import ALGORITHMS

if TYPE_CHECKING:
    from .keys.keyring import Keyring

# Everything else is imported inside the command that uses it: --help and keys load no data libraries.
EXIT_BUG = 70


def _examples(*lines: str) -> str:
    """A command's --help epilog: its examples, one per line."""
    return "\n\n".join(["Examples:", *(f"  {line}" for line in lines)])  # typer keeps a line per paragraph


app = typer.Typer(
    name="privprep",
    help="Privacy preprocessing for data that will train models: Parquet/CSV in; a run directory of sanitized "
    "Parquet, report.json and report.html out. Set-up and config reference: README.md, docs/config.md.",
    epilog=_examples("privprep init patients.parquet --output pipeline.yaml", "privprep keys new --output keys/dev.keyring",
                     "privprep run pipeline.yaml --dry-run")
    + "\n\nExit codes: 0 success, 1 handled failure, 2 usage or config error; --debug anywhere shows the traceback.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Create, list and rotate keyring keys (material is never printed).", no_args_is_help=True,
                       epilog=_examples("privprep keys new --output keys/dev.keyring",
                                        "privprep keys list keys/dev.keyring"))
federate_app = typer.Typer(help="Federated DP training.", no_args_is_help=True,
                           epilog=_examples("privprep federate simulate sample_data/pipeline.yaml --sites 3 --rounds 5"))
app.add_typer(keys_app, name="keys")
app.add_typer(federate_app, name="federate")
log = logging.getLogger("privprep")


# click's exceptions as typer raises them (typer >= 0.2x vendors click as typer._click; older typer uses click itself)
_click_errors = sys.modules[typer.BadParameter.__module__]


# Options with a fixed set of values: --help shows them as [a|b], a bad value fails as a usage error naming them.
class Engine(str, Enum):
    streaming = "streaming"
    dask = "dask"


LogFormat = Enum("LogFormat", {name: name for name in ("text", "json")}, type=str)  # type: ignore[misc]  # progress.LOG_FORMATS
Purpose = Enum("Purpose", {name: name for name in ALGORITHMS}, type=str)  # type: ignore[misc]


class Partition(str, Enum):
    iid = "iid"
    label_skew = "label-skew"


_CHOICES: dict[str, type[Enum]] = {"--engine": Engine, "--log-format": LogFormat, "--purpose": Purpose,
                                   "--partition": Partition}


def _version(show: bool) -> None:
    if show:
        from .reports.report import privprep_version

        typer.echo(f"privprep {privprep_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_version, help="print the version and exit"),
) -> None:
    pass


@app.command(epilog=_examples("privprep run sample_data/pipeline.yaml --dry-run",
                               "privprep run sample_data/pipeline.yaml --overwrite --engine dask"))
def run(
    config: Path = typer.Argument(..., help="pipeline config (YAML)"),
    input: Optional[str] = typer.Option(None, "--input", help="override the config's input"),
    output: Optional[str] = typer.Option(None, "--output", help="override the config's output run directory"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an earlier run, once this one succeeded"),
    dry_run: bool = typer.Option(False, "--dry-run", help="validate config, keys and input schema; write nothing"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress or info lines"),
    log_format: LogFormat = typer.Option("text", "--log-format",
                                         help="log lines on stderr: text, or json (one object per line)"),
    engine: Engine = typer.Option(Engine.streaming, "--engine",
                                  help="streaming (one process, flat memory) or dask (a local or given cluster)"),
    scheduler: Optional[str] = typer.Option(
        None, "--scheduler", help="with --engine dask: a scheduler address (tcp://host:8786); default a local cluster"
    ),
) -> None:
    """Run the pipeline of CONFIG: sanitized Parquet, report.json and report.html in its output run directory."""
    from . import api
    from .engines.progress import Progress

    log_format, engine = LogFormat(log_format).value, Engine(engine).value
    if scheduler is not None and engine != "dask":
        raise UsageError("--scheduler applies only to --engine dask")
    _logging(quiet, log_format)
    if dry_run:
        typer.echo(api.plan(config, input=input, output=output).describe())
        return
    progress = Progress(quiet=quiet, terminal=False if log_format == "json" else None)
    api.run(config, input=input, output=output, overwrite=overwrite, progress=progress, engine=engine, scheduler=scheduler)
    # the result is the runner's one "wrote N rows (M removed) to RUN_DIR" line (event run_done), not repeated here


@app.command(epilog=_examples("privprep init data/customers.parquet --output customers.yaml")
             + "\n\nThe stages protect the identifiers and k-anonymize the quasi-identifiers; numeric sensitive columns "
             "get no bounds (DP statistics refuse them until you declare them). Only column names and types are read.")
def init(
    input: str = typer.Argument(..., help="Parquet/CSV file, directory or glob (only its column names and types are read)"),
    output: Path = typer.Option(Path("pipeline.yaml"), "--output", "--out", "-o", help="config file to write"),
    force: bool = typer.Option(False, "--force", help="replace an existing config file"),
    delimiter: str = typer.Option(",", "--delimiter", help="CSV field delimiter"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no info line"),
) -> None:
    """Write a starting config for INPUT: every column declared with a guessed role, marked '# review'."""
    from .configs.init_config import ROLES, write_starting_config, yaml_keyring

    _logging(quiet)
    columns = write_starting_config(input, output, force=force, delimiter=delimiter)
    if not quiet:
        counts = ", ".join(f"{sum(c.role == r for c in columns)} {r}" for r in ROLES)
        keyring = yaml_keyring(output)
        keys = f"privprep keys new --output {keyring} --exist-ok && " if keyring else ""
        typer.echo(f"wrote {output}: {len(columns)} columns ({counts}); review every '# review' line, then: "
                   f"{keys}privprep run {output} --dry-run", err=True)


@app.command(epilog=_examples("privprep sample --rows 3000 --output data/"))
def sample(
    rows: int = typer.Option(3000, "--rows", min=0, help="number of rows"),
    out: Path = typer.Option(..., "--output", "--out", help="output directory (gets patients.parquet)"),
    seed: int = typer.Option(0, "--seed", help="random seed"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no info line"),
) -> None:
    """Generate the synthetic sample dataset (Faker, seeded)."""
    from .files.sample import write_sample

    _logging(quiet)
    paths = write_sample(rows, out, seed=seed)
    if not quiet:
        typer.echo(f"wrote {rows:,} rows to {', '.join(str(p) for p in paths)}", err=True)


@keys_app.command("new", epilog=_examples("privprep keys new --output keys/dev.keyring",
                                         "privprep keys new --output keys/analyst.keyring --purpose recipient --id analyst-1"))
def keys_new(
    out: Path = typer.Option(..., "--output", "--out", help="keyring file to create or add to"),
    purpose: Optional[Purpose] = typer.Option(None, "--purpose",
                                              help="the purpose of one new key (default: one key per symmetric purpose)"),
    key_id: Optional[str] = typer.Option(None, "--id", help="id of the new key (with --purpose)"),
    exist_ok: bool = typer.Option(False, "--exist-ok", help="do nothing if the keyring already exists"),
    force: bool = typer.Option(
        False, "--force", help="add the new key(s) even where the keyring already has a key of that purpose: "
        "they become the primary keys (a rotation; keys rotate does one purpose)"
    ),
    public_out: Optional[Path] = typer.Option(
        None, "--public-out", help="with --purpose recipient: where to write the public key (default: <keyring folder>/<id>.pub)"
    ),
) -> None:
    """Create a keyring, or add a key to it (without --purpose: one key per symmetric purpose).
    With --purpose recipient the private key goes into the keyring and the public key into a .pub file."""
    from .keys.keyring import Keyring

    _logging(False)
    if exist_ok and force:
        raise UsageError("--exist-ok keeps an existing keyring as it is and --force adds new primary keys to it; give one of them")
    purpose = Purpose(purpose).value if purpose is not None else None
    if exist_ok and out.exists():
        Keyring.load(out)
        typer.echo(f"keyring {out} exists; left as it is", err=True)
        return
    ring = Keyring.create(out, purpose=purpose, key_id=key_id, force=force)
    typer.echo(f"keyring {out}: {len(ring.entries())} key(s); material not shown", err=True)
    if purpose == "recipient":
        _write_public(ring, ring.entries()[-1].id, public_out)


@keys_app.command("list", epilog=_examples("privprep keys list keys/dev.keyring --json"))
def keys_list(
    file: Path = typer.Argument(..., help="keyring file"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """List key ids and purposes (never material)."""
    from .keys.keyring import Keyring

    _logging(False)
    ring = Keyring.load(file)
    primary = ring.primary_ids()
    rows = [
        {"id": e.id, "purpose": e.purpose, "algorithm": e.algorithm, "created": e.created.isoformat(), "primary": e.id in primary}
        for e in ring.entries()
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"{'id':<36} {'purpose':<13} {'algorithm':<12} {'created':<26} primary")
    for row in rows:
        typer.echo(f"{row['id']:<36} {row['purpose']:<13} {row['algorithm']:<12} {row['created']:<26} {'yes' if row['primary'] else ''}")


@keys_app.command("rotate", epilog=_examples("privprep keys rotate keys/dev.keyring --purpose pseudonymize"))
def keys_rotate(
    file: Path = typer.Argument(..., help="keyring file"),
    purpose: Purpose = typer.Option(..., "--purpose", help="the purpose of the new primary key"),
    public_out: Optional[Path] = typer.Option(None, "--public-out", help="with --purpose recipient: where to write the public key"),
) -> None:
    """Add a new primary key of PURPOSE; older keys stay, so data written under them still decrypts.
    New runs use the new key (for pseudonymize and tokenize: new pseudonyms and tokens, a new epoch)."""
    from .keys.keyring import Keyring

    _logging(False)
    purpose = Purpose(purpose).value
    ring = Keyring.load(file)
    entry = ring.add(purpose)
    ring.save()
    typer.echo(f"keyring {file}: new primary '{purpose}' key {entry.id}", err=True)
    if purpose == "recipient":
        _write_public(ring, entry.id, public_out)


def _write_public(ring: Keyring, key_id: str, path: Optional[Path]) -> None:
    from .keys.keyring import default_public_path

    written = ring.write_public_key(key_id, path or default_public_path(ring.path, key_id))
    typer.echo(f"public key of recipient key {key_id}: {written} (give this file to producers)", err=True)


@app.command(epilog=_examples("privprep check sample_data/patients.parquet --qi birth_date,zip,sex --sensitive diagnosis",
                               "privprep check out/sample/data --qi birth_date,zip,sex,occupation --k 5 --json"))
def check(
    input: str = typer.Argument(..., help="Parquet/CSV file, directory or glob"),
    qi: str = typer.Option(..., "--qi", help="quasi-identifiers, comma-separated"),
    sensitive: Optional[str] = typer.Option(None, "--sensitive", help="sensitive columns, comma-separated"),
    k: Optional[int] = typer.Option(None, "--k", min=1, help="exit 1 when the input is not k-anonymous"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Measure k, l-diversity, t-closeness and re-identification risk of INPUT without changing it."""
    from .risk.check import format_text, measure

    _logging(True)
    result = measure(input, _split(qi), _split(sensitive) if sensitive else None, k=k)
    typer.echo(json.dumps(result, indent=2) if as_json else format_text(result))
    if k is not None and not result["meets_k"]:
        raise typer.Exit(1)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@app.command(epilog=_examples("privprep decrypt out/sample --keyring keys/sample.keyring --columns national_id,diagnosis "
                               "--output out/sample-clear"))
def decrypt(
    run_dir: str = typer.Argument(..., help="a run directory written by privprep run (or s3://bucket/prefix)"),
    keyring: str = typer.Option(..., "--keyring", help="keyring holding the keys of the columns"),
    columns: str = typer.Option(..., "--columns", help="columns to decrypt, comma-separated"),
    output: Optional[str] = typer.Option(None, "--output", help="new run directory (default: RUN_DIR-decrypted)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an earlier output, once this one succeeded"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress or info lines"),
) -> None:
    """Reverse encrypt, tokenize and column-encrypted columns of RUN_DIR for a holder of the keys."""
    from .keys.decrypt import decrypt_run
    from .engines.progress import Progress

    _logging(quiet)
    names = [part.strip() for part in columns.split(",") if part.strip()]
    decrypt_run(run_dir, keyring=keyring, columns=names, output=output, overwrite=overwrite, progress=Progress(quiet=quiet))
    # the result is decrypt_run's one "decrypted ... into DIR" line, not repeated here


@app.command(epilog=_examples("privprep report out/sample"))
def report(
    run_dir: str = typer.Argument(..., help="a run directory written by privprep run (or s3://bucket/prefix)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no info line"),
) -> None:
    """(Re)build RUN_DIR/report.html from RUN_DIR/report.json (self-contained: no network needed to view it)."""
    from .reports.html_report import rebuild
    from .reports.plots import available

    _logging(quiet)
    path = rebuild(run_dir)
    if not quiet:
        plots = "" if available() else " (without plots: pip install 'privprep[report]' to get them)"
        typer.echo(f"wrote {path}{plots}", err=True)


@app.command(epilog=_examples(
    "privprep attack out/sample --auxiliary voters.parquet --on age,zip,sex --target diagnosis --json",
    "privprep attack out/sample --auxiliary voters.parquet --on age,zip --truth person_id --record"))
def attack(
    run_dir: str = typer.Argument(..., help="a run directory written by privprep run (with a k_anonymity stage)"),
    auxiliary: str = typer.Option(..., "--auxiliary", help="what an attacker knows: Parquet/CSV with raw quasi-identifier values"),
    on: str = typer.Option(..., "--on", help="quasi-identifiers to join on, comma-separated"),
    target: Optional[str] = typer.Option(None, "--target", help="a sensitive column: measure its attribute disclosure"),
    truth: Optional[str] = typer.Option(None, "--truth", help="a column in both tables naming the record: count correct re-identifications"),
    config: Optional[Path] = typer.Option(None, "--config", help="the config the run used (default: the one its report names)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    record: bool = typer.Option(False, "--record", help="add the figures to the run's report.json and report.html"),
) -> None:
    """Link an auxiliary table to RUN_DIR's released records and report counts and rates (never a value)."""
    from .risk.attack import attack_run, format_text, record as record_attack

    _logging(True)
    result = attack_run(run_dir, auxiliary, _split(on), target=target, truth=truth, config=config)
    if record:
        record_attack(run_dir, result)
    typer.echo(json.dumps(result, indent=2) if as_json else format_text(result))


@app.command(epilog=_examples(
    "privprep sweep sample_data/pipeline.yaml --k 2,5,10 --epsilon 0.5,1,3 --output out/sweep",
    "privprep sweep sample_data/pipeline.yaml --epsilon 0.1,0.5,1,3 --max-error 0.05"))
def sweep(
    config: Path = typer.Argument(..., help="pipeline config (YAML)"),
    k: Optional[str] = typer.Option(None, "--k", help="k values, comma-separated (default 2,5,10,20 with a k_anonymity stage)"),
    epsilon: Optional[str] = typer.Option(None, "--epsilon", help="epsilon values, comma-separated (default 0.1,0.5,1,3 with DP stages)"),
    out: Optional[Path] = typer.Option(None, "--output", "--out", help="sweep directory (default: the config's output + '-sweep')"),
    target_accuracy: Optional[float] = typer.Option(None, "--target-accuracy", help="stop at the smallest epsilon whose training accuracy reaches this"),
    max_error: Optional[float] = typer.Option(None, "--max-error", help="stop at the smallest epsilon whose largest relative DP error is at most this"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an earlier sweep directory, once this one succeeded"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress or info lines"),
) -> None:
    """Privacy-utility sweep: run CONFIG once per k and per epsilon (scratch ledger), write sweep.json and sweep.html."""
    from .engines.progress import Progress
    from .sweeps.sweep import parse_values, run_sweep

    _logging(quiet)
    result = run_sweep(
        config, k=parse_values(k, "--k", int), epsilon=parse_values(epsilon, "--epsilon", float), out=out,
        target_accuracy=target_accuracy, max_error=max_error, overwrite=overwrite, progress=Progress(quiet=quiet),
    )
    if not quiet:
        typer.echo(result.summary(), err=True)


@federate_app.command("simulate", epilog=_examples(
    "privprep federate simulate sample_data/pipeline.yaml --sites 3 --rounds 5 --output out/federated",
    "privprep federate simulate sample_data/pipeline.yaml --sites 3 --partition label-skew --alpha 0.3"))
def federate_simulate(
    config: Path = typer.Argument(..., help="pipeline config (YAML) with a train stage and a budget"),
    sites: int = typer.Option(..., "--sites", help="number of sites (data holders) to split the input into, >= 2"),
    partition: Partition = typer.Option(Partition.iid, "--partition", help="iid, or label-skew (Dirichlet over each label's rows)"),
    rounds: int = typer.Option(5, "--rounds", help="FedAvg rounds"),
    local_epochs: Optional[int] = typer.Option(None, "--local-epochs", help="epochs per round at each site (default: train.epochs / rounds)"),
    alpha: float = typer.Option(0.5, "--alpha", help="label-skew: Dirichlet concentration (smaller: more skewed)"),
    seed: Optional[int] = typer.Option(None, "--seed", help="reproducible split, weights, batches and noise (tests only: a known seed lets anyone replay the noise)"),
    output: Optional[str] = typer.Option(None, "--output", help="override the config's output run directory"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an earlier run, once this one succeeded"),
    client_epsilon: Optional[float] = typer.Option(None, "--client-epsilon", help="also add server-side client-level DP reaching this epsilon"),
    client_delta: float = typer.Option(1e-5, "--client-delta", help="delta of client-level DP"),
    client_clip: float = typer.Option(1.0, "--client-clip", help="clipping norm of each site's update (client-level DP)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress or info lines"),
) -> None:
    """Split the input into N sites, sanitize each at its site, train with FedAvg and DP-SGD at every site (Flower)."""
    from .federated.simulate import simulate
    from .engines.progress import Progress

    partition = Partition(partition).value
    _logging(quiet)
    try:
        result = simulate(
            config, sites=sites, partition=partition, rounds=rounds, local_epochs=local_epochs, alpha=alpha, seed=seed,
            output=output, overwrite=overwrite, client_epsilon=client_epsilon, client_delta=client_delta,
            client_clip=client_clip, progress=Progress(quiet=quiet),
        )
    except (KeyboardInterrupt, SystemExit) as exc:  # Ctrl-C, or SIGTERM (Ray's handler exits); already cleaned up
        _error("interrupted; nothing was written (a site that started training has recorded its spend in its ledger)")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(143 if isinstance(exc, SystemExit) else 130)  # Flower's threads may wait on Ray actors that are gone
    if not quiet:
        card = result.report["stages"][0]
        per_site = ", ".join(f"{s['site']} epsilon {s['epsilon']:.3g}" for s in card["sites"] if s["epsilon"] is not None)
        accuracy = f"{card['accuracy']:.3f}" if card["accuracy"] is not None else "unknown"
        typer.echo(f"{result.run_dir}: {sites} sites, {rounds} rounds, global accuracy {accuracy}; {per_site}", err=True)


@federate_app.command("prepare", epilog=_examples("privprep federate prepare site.yaml --name hospital-a --output out/site-a"))
def federate_prepare(
    config: Path = typer.Argument(..., help="this site's pipeline config (YAML): its own input, budget and ledger"),
    output: Optional[str] = typer.Option(None, "--output", help="override the config's output run directory"),
    name: str = typer.Option("site", "--name", help="this site's name in logs and its ledger entries"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an earlier run, once this one succeeded"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress or info lines"),
) -> None:
    """At a real site: run CONFIG's stages before train on the site's data and write site.json for its SuperNode."""
    from .federated.prepare import prepare
    from .engines.progress import Progress

    _logging(quiet)
    result = prepare(config, output=output, name=name, overwrite=overwrite, progress=Progress(quiet=quiet))
    if not quiet:
        typer.echo(f"{result.run_dir}: {result.report['output']['rows']:,} sanitized rows; start the SuperNode with "
                   f"--node-config \"site-dir='{result.run_dir}'\"", err=True)


def _logging(quiet: bool, log_format: str = "text") -> None:
    from .engines.progress import configure_logging

    configure_logging(quiet=quiet, log_format=log_format)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns (and exits with) the SPEC's exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    code = _dispatch(args, debug)
    if argv is None:
        sys.exit(code)
    return code


def _dispatch(args: list[str], debug: bool) -> int:
    try:
        code = _command().main(args=args, prog_name="privprep", standalone_mode=False)  # --help prints, returns 0
        return code if isinstance(code, int) else 0
    except _click_errors.NoArgsIsHelpError as exc:  # no subcommand: the help was printed
        return exc.exit_code
    except _click_errors.ClickException as exc:  # a bad flag or value: one line, like every user error
        _error(_usage_message(exc))
        return exc.exit_code
    except typer.Abort:
        _error("interrupted; nothing was written")
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except PrivprepError as exc:
        if debug:
            raise
        _error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _error("interrupted; nothing was written")
        return 130
    except Exception as exc:  # a bug: say so without quoting data
        if debug:
            raise
        _error(f"internal error ({type(exc).__name__}); this is a bug, rerun with --debug for the traceback")
        return EXIT_BUG


def _command() -> Any:
    """The app's click command. typer <= 0.20 under click >= 8.5 loses each argument's help (click's Argument now
    takes ``help`` and resets what typer set), so it is put back from the command's declaration."""
    import inspect

    command = typer.main.get_command(app)
    pending = [command]
    while pending:
        current = pending.pop()
        pending.extend(getattr(current, "commands", {}).values())
        declared = inspect.signature(current.callback).parameters if current.callback else {}
        for param in current.params:
            info = declared[param.name].default if param.name in declared else None
            if getattr(param, "help", "") is None and isinstance(info, typer.models.ArgumentInfo) and info.help:
                param.help = info.help
    return command


def _usage_message(exc: Exception) -> str:
    """Click's message on one line, with where to get help: ``--engine must be one of streaming, dask (see ...)``."""
    message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
    name = next(iter(getattr(getattr(exc, "param", None), "opts", None) or []), None)
    if isinstance(exc, typer.BadParameter) and name in _CHOICES:
        message = f"{name} must be one of {', '.join(c.value for c in _CHOICES[name])}"
    ctx = getattr(exc, "ctx", None)
    return f"{message} (see '{ctx.command_path} --help')" if ctx is not None else message


def _error(message: str) -> None:
    from .engines.progress import json_logging

    if json_logging():  # --log-format json: the error is a JSON line too
        typer.echo(json.dumps({"level": "error", "logger": "privprep", "message": message, "event": "error"}), err=True)
        return
    printable = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in message)
    typer.echo(f"privprep: error: {printable}", err=True)  # one line, even for a name holding a newline


if __name__ == "__main__":  # pragma: no cover
    main()
