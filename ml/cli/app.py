"""The ``loopline`` command line. Every command calls the same functions as the DAGs."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from contextlib import nullcontext, suppress
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ml.cli.airflow_commands import register_commands as register_airflow_commands
from ml.cli.common import analyst_database, console
from ml.cli.common import init_home as _init
from ml.cli.common import parse_date as _date
from ml.cli.common import progress_bar as _progress
from ml.cli.common import reset_home as _reset
from ml.cli.decision_commands import register_commands as register_decision_commands
from ml.cli.demo_command import register_commands as register_demo_commands
from ml.cli.error_handling import (
    DEBUG_ENV,
    LooplineGroup,
    fail,
    raise_if_stopped,
    set_debug,
)
from ml.cli.ops_commands import register_commands as register_ops_commands
from ml.cli.train_commands import register_commands as register_model_commands
from ml.config.output import active_log, route_library_output
from ml.config.settings import Settings, get_settings

app = typer.Typer(
    cls=LooplineGroup,
    help="Loopline: nightly retention decisions from a transaction log.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
import_app = typer.Typer(help="Turn external data into landing partitions.")
app.add_typer(import_app, name="import")
register_model_commands(app)
register_decision_commands(app)
register_demo_commands(app)
register_ops_commands(app)
register_airflow_commands(app)


@app.callback()
def _options(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            envvar=DEBUG_ENV,
            help="Print the traceback of an error (also LOOPLINE_DEBUG=1); without "
            "it an error is one or a few plain lines.",
        ),
    ] = False,
) -> None:
    """Loopline: nightly retention decisions from a transaction log."""
    set_debug(debug)
    if not debug:
        # library warnings and messages go to LOOPLINE_HOME/logs/loopline.log
        route_library_output(get_settings())


DateOpt = Annotated[str, typer.Option(help="A date, YYYY-MM-DD.")]


@app.command()
def init(
    reset: Annotated[
        bool, typer.Option(help="Delete existing Loopline state first.")
    ] = False,
) -> None:
    """Create LOOPLINE_HOME, the warehouse and its raw/ops schemas."""
    settings = get_settings()
    if reset:
        _reset(settings)
    _init(settings)
    console.print(f"initialised [bold]{settings.root}[/bold]")


@app.command()
def simulate(
    customers: Annotated[int, typer.Option(help="Customers in the world.")] = 5000,
    start: DateOpt = "2025-01-01",
    days: Annotated[int, typer.Option(help="Days to simulate.")] = 180,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    reset: Annotated[bool, typer.Option(help="Replace an existing world.")] = False,
) -> None:
    """Simulate a world of customers and write daily landing partitions."""
    from ml.sim import load_sim_config
    from ml.sim import simulate as run_simulation

    settings = get_settings()
    _init(settings)
    config = load_sim_config().model_copy(
        update={"n_customers": customers, "seed": seed}
    )
    summary = run_simulation(
        settings, config, start=_date(start), days=days, progress=True, reset=reset
    )
    console.print(summary)


@import_app.command("transactions")
def import_transactions(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    customer_col: Annotated[str, typer.Option(help="Customer id column.")],
    date_col: Annotated[str, typer.Option(help="Purchase date or time column.")],
    amount_col: Annotated[str, typer.Option(help="Purchase amount column.")],
    date_format: Annotated[
        str | None, typer.Option(help="strptime format, e.g. %d/%m/%Y.")
    ] = None,
    id_col: Annotated[str | None, typer.Option(help="Transaction id column.")] = None,
    category_col: Annotated[str | None, typer.Option(help="Category column.")] = None,
    discount_col: Annotated[
        str | None, typer.Option(help="Boolean 'was discounted' column.")
    ] = None,
    customers_file: Annotated[
        Path | None,
        typer.Option(help="A customers table; without it, derived from purchases."),
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option(
            help="Text files: , ; tab | (or any one character), 'whitespace' for "
            "runs of spaces, or 'auto' (the default: detected)."
        ),
    ] = None,
    encoding: Annotated[
        str, typer.Option(help="Text files: encoding, e.g. latin-1, cp1252.")
    ] = "utf-8",
    decimal: Annotated[
        str, typer.Option(help="Decimal mark of text amounts: . or ,")
    ] = ".",
    timezone: Annotated[
        str,
        typer.Option(
            help="Zone the purchase times are stored in; dt is their day there."
        ),
    ] = "UTC",
) -> None:
    """Turn an external transaction log (CSV or Parquet) into landing partitions."""
    from ml.data.ingest import ImportInputError
    from ml.data.ingest import import_transactions as run_import

    settings = get_settings()
    _init(settings)
    try:
        summary = run_import(
            settings,
            file,
            customer_col=customer_col,
            date_col=date_col,
            amount_col=amount_col,
            date_format=date_format,
            id_col=id_col,
            category_col=category_col,
            discount_col=discount_col,
            customers_path=customers_file,
            delimiter=delimiter,
            encoding=encoding,
            decimal=decimal,
            timezone=timezone,
        )
    except (ImportInputError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    console.print(summary)


@app.command()
def rebuild(
    start: DateOpt,
    end: DateOpt,
    every: Annotated[int, typer.Option(help="A feature snapshot every N days.")] = 1,
) -> None:
    """Validate, load and build the marts for a whole date range in one pass."""
    from ml.ops.tasks import rebuild as run_rebuild

    settings = get_settings()
    _init(settings)
    title = f"rebuilding marts {start} → {end} (every {every} days)"
    with console.status(title) as status:
        detail = run_rebuild(
            _date(start),
            _date(end),
            every=every,
            settings=settings,
            on_stage=lambda stage: status.update(f"{title}: {stage}"),
        )
    console.print(detail)
    _publish(settings, _date(end), full=True)  # a rebuild rewrites history


def _run_nightly(settings: Settings, days: list[date]) -> list[Any]:
    """Run the nightly DAG for each day in order; stop at the first day that did
    not run to its end (a failed task, or a run in which nothing ran)."""
    from loopline_airflow.runner import configure, hold_warehouse, run_dag, send_logs_to

    configure(settings)
    log = active_log()
    if log is not None:  # Airflow's and the tasks' log lines: to the log file
        send_logs_to(log.open())
    # The console shows one line per night; dbt's own lines go to its log file
    # (dbt/logs) unless LOOPLINE_DBT_LOG_LEVEL=info asks for them (default warn).
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    from ml.ops.tasks import deferred_data_docs

    outcomes = []
    # many nights in one process render their Data Docs once, at the end
    docs = deferred_data_docs(settings, days[0]) if len(days) > 1 else nullcontext()
    with docs, _progress() as progress:
        task = progress.add_task("loopline_nightly", total=len(days))
        for day in days:
            # a StartDateError (a date before the DAGs' start) stops the command;
            # the night's tasks share one open warehouse (see hold_warehouse)
            with hold_warehouse(settings):
                outcome = run_dag(settings, "loopline_nightly", day)
            raise_if_stopped()  # a task run in-process swallows Ctrl-C and SIGTERM
            outcomes.append(outcome)
            status = "[green]ok" if outcome.ok else "[red]FAILED"
            progress.console.print(
                f"{day}  {status}[/]  {outcome.seconds:5.1f}s  "
                + ("" if outcome.ok else str(outcome.problem))
            )
            if not outcome.ok:
                for line in failure_cause(settings, outcome):
                    progress.console.print(f"  {line}", highlight=False)
            progress.advance(task)
            if not outcome.ok:
                break
    return outcomes


def failure_cause(settings: Settings, outcome: Any) -> list[str]:
    """The cause and the hint of a failed run's alert (``ops.alerts``, or the
    spool while the warehouse was locked), as lines; none when nothing was
    recorded. The whole task log is in the log file."""
    from ml.ops.alerts import spooled_alerts
    from ml.storage.warehouse import connect, table_exists

    found: list[tuple[Any, ...]] = []
    failed = outcome.failed_tasks
    if failed and settings.warehouse_path.is_file():
        marks = ", ".join("?" for _ in failed)
        with connect(settings.warehouse_path, read_only=True) as con:
            if table_exists(con, "ops", "alerts"):
                found = con.execute(
                    "select task_id, error_type, cause, hint from ops.alerts "
                    f"where dag_id = ? and run_date = ? and task_id in ({marks}) "
                    "order by failed_at desc limit 1",
                    [outcome.dag_id, outcome.logical_date, *failed],
                ).fetchall()
    if not found:
        found = [
            (a.task_id, a.error_type, a.cause, a.hint)
            for a in reversed(spooled_alerts(settings))
            if a.dag_id == outcome.dag_id
            and a.run_date == outcome.logical_date
            and a.task_id in failed
        ][:1]
    lines = []
    for task_id, error_type, cause, hint in found:
        lines.append(f"{task_id}: {str(error_type).rsplit('.', 1)[-1]}: {cause}")
        if hint:
            lines.append(f"what to do: {hint}")
    log = active_log()
    if log is not None:
        lines.append(f"task logs: {log.path}")
    return lines


@app.command()
def run(date_: Annotated[str, typer.Option("--date", help="Logical date.")]) -> None:
    """Run the real nightly DAG in-process (dag.test) for one logical date."""
    settings = get_settings()
    _init(settings)
    outcomes = _run_nightly(settings, [_date(date_)])
    if not outcomes[-1].ok:
        raise typer.Exit(1)


@app.command()
def backfill(start: DateOpt, end: DateOpt) -> None:
    """Run the nightly DAG for each logical date from START to END, in order."""
    from ml.ops.tasks import date_range

    settings = get_settings()
    _init(settings)
    days = date_range(_date(start), _date(end))
    if not days:
        fail(f"end {end} lies before start {start}: nothing to run")
    outcomes = _run_nightly(settings, days)
    if len(outcomes) < len(days) or not all(o.ok for o in outcomes):
        raise typer.Exit(1)


def print_query(query: str, database: Path, title: str | None = None) -> None:
    """Run a query on ``database``, opened read-only, and print it as a table."""
    from ml.storage.warehouse import connect

    with connect(database, read_only=True) as con:
        result = con.execute(query)
        columns = [d[0] for d in result.description or []]
        rows = result.fetchall()
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="A SQL query (read-only).")],
    live: Annotated[
        bool,
        typer.Option(
            help="Query the live warehouse (raw, staging and intermediate too) "
            "instead of the analyst copy. A pipeline task that writes while the "
            "query runs fails at once: use only when no run is in progress."
        ),
    ] = False,
) -> None:
    """Run a read-only SQL query on the analyst copy (analytics.duckdb): the marts,
    the ops tables and the reporting views as of the last published run."""
    settings = get_settings()
    if live:
        print_query(query, settings.warehouse_path)
        return
    print_query(query, analyst_database(settings))


def _latest_run_date(settings: Settings) -> date | None:
    """The latest run date recorded in ``ops.runs`` of the warehouse."""
    from ml.storage.warehouse import connect, table_exists

    if not settings.warehouse_path.is_file():
        return None
    with connect(settings.warehouse_path, read_only=True) as con:
        if not table_exists(con, "ops", "runs"):
            return None
        found = con.execute("select max(run_date) from ops.runs").fetchone()
    return found[0] if found else None


def _publish(settings: Settings, run_date: date, full: bool = False) -> None:
    from ml.ops.tasks import publish as run_publish

    summary = run_publish(run_date, settings, step="publish_manual", full=full)
    counts = summary.counts
    rows = sum(counts["tables"].values())
    console.print(
        f"published {len(counts['tables'])} tables ({rows:,} rows) and "
        f"{len(counts['views'])} views to [bold]{counts['path']}[/bold] "
        f"in {counts['elapsed_seconds']:.1f} s ({counts['partitions_written']:,} "
        f"partitions written, {counts['partitions_kept']:,} kept)"
    )


@app.command()
def publish(
    date_: Annotated[
        str | None,
        typer.Option(
            "--date", help="Run date to record it under (default: the latest run)."
        ),
    ] = None,
    full: Annotated[
        bool,
        typer.Option(
            help="Republish every table whole, not only the partitions that changed."
        ),
    ] = False,
) -> None:
    """Write the analyst copy (analytics.duckdb) from the warehouse now and swap it
    in atomically; the nightly and outcomes runs do this as their last task."""
    settings = get_settings()
    if not settings.warehouse_path.is_file():
        fail(f"no warehouse at {settings.warehouse_path} yet")
    import duckdb

    try:
        run_date = _date(date_) if date_ else _latest_run_date(settings)
    except duckdb.IOException as error:
        fail(
            f"cannot read {settings.warehouse_path}: another process holds it "
            f"(a pipeline task writing?); try again after the run. {error}"
        )
    _publish(settings, run_date or date.today(), full=full)


@app.command()
def docs() -> None:
    """Generate the dbt documentation site of the analyst copy and print where
    its index.html is."""
    from ml.analytics.publish import analytics_database, published_run_date
    from ml.data.dbt import generate_docs

    settings = get_settings()
    # the copy is read, never the live warehouse (NotPublishedError without one)
    analytics = analytics_database(settings)
    run_date = published_run_date(analytics)
    with console.status("dbt docs generate"):
        site = generate_docs(settings, analytics, run_date)
    console.print(f"dbt docs: [bold]{site / 'index.html'}[/bold]")
    console.print(f"one file that opens from disk: {site / 'static_index.html'}")
    console.print(
        f"or serve the folder: .venv/bin/python -m http.server --directory {site} "
        "8080 (then open http://127.0.0.1:8080)"
    )


def main() -> None:
    """The ``loopline`` console script: run the command, then end the process
    without the interpreter's teardown.

    When the command returns, everything a normal exit does for the program's
    sake still happens, in the same order: the exit hooks of threads (thread
    pools are shut down and every non-daemon thread is joined), then the
    ``atexit`` functions (logging flushed and closed, multiprocessing pools
    finalised), then standard output and error are flushed. What is skipped is
    only the teardown after that: freeing, module by module, the million or so
    objects of a process that has loaded Airflow, dbt, GX and MLflow, which took
    about 1.3 s after every ``loopline run`` (``benchmarks/bench_cli_exit.py``).
    Nothing of Loopline's is written then. The exit code is the command's own.

    Tests call ``app`` itself (typer's runner), never this.
    """
    try:
        app()
        code = 0
    except SystemExit as stop:
        code = exit_code(stop.code)
    leave(code)


def exit_code(code: object) -> int:
    """The process exit code ``sys.exit(code)`` would give: None is 0, an int is
    itself, anything else is printed to standard error and gives 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def leave(code: int) -> None:
    """Run the interpreter's exit steps for the program (thread exit hooks and
    joins, ``atexit`` functions, flushing standard streams), then end at once."""
    # the function the interpreter itself calls first on exit (Py_FinalizeEx):
    # it runs threading's exit hooks and joins every non-daemon thread
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        # a closed pipe or stream has nothing left to lose
        with suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
