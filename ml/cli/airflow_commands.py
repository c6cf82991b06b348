"""``loopline airflow``: Airflow 3 with Loopline's DAGs and plugin, on this machine.

The services themselves are :mod:`loopline_airflow.services` (api-server,
scheduler, dag-processor, triggerer; LocalExecutor on SQLite metadata under
``$LOOPLINE_HOME/airflow``); this command starts them, waits until they are
healthy, prints where to go and how to sign in, and stops every process on
Ctrl-C (or when one of them exits).
"""

from __future__ import annotations

import time
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.console import Console

from ml.config.settings import Settings, get_settings

console = Console()


def _mlflow_address(settings: Settings) -> tuple[str, int]:
    where = urlsplit(settings.mlflow_ui_url)
    return where.hostname or "127.0.0.1", where.port or 5000


def register_commands(app: typer.Typer) -> None:
    @app.command("airflow")
    def airflow(
        host: Annotated[
            str | None,
            typer.Option(help="Interface to serve on (LOOPLINE_AIRFLOW_HOST)."),
        ] = None,
        port: Annotated[
            int | None, typer.Option(help="API/UI port (LOOPLINE_AIRFLOW_PORT).")
        ] = None,
        schedule: Annotated[
            bool,
            typer.Option(
                "--schedule/--no-schedule",
                help="Let the scheduler create the @daily runs for the calendar "
                "date and the asset-triggered retrain runs (off: runs come from "
                "triggers and backfills; a simulated world lives in the past).",
            ),
        ] = False,
        mlflow: Annotated[
            bool,
            typer.Option(
                "--mlflow/--no-mlflow",
                help="Also serve the MLflow UI (LOOPLINE_MLFLOW_UI_URL).",
            ),
        ] = True,
    ) -> None:
        """Start Airflow 3 locally with Loopline's DAGs and plugin (until Ctrl-C)."""
        from loopline_airflow.services import (
            COMPONENTS,
            login,
            port_in_use,
            start_services,
        )

        settings = get_settings()
        settings.ensure_dirs()
        host = host or settings.airflow_host
        port = port or settings.airflow_port
        busy = [f"{host}:{port}"] if port_in_use(host, port) else []
        if mlflow and port_in_use(*_mlflow_address(settings)):
            busy.append(settings.mlflow_ui_url)
        if busy:
            console.print(
                f"[red]In use already: {', '.join(busy)}.[/] Pass --port (or "
                "LOOPLINE_AIRFLOW_PORT), --no-mlflow, or LOOPLINE_MLFLOW_UI_URL."
            )
            raise typer.Exit(1)
        components = (*COMPONENTS, "mlflow") if mlflow else COMPONENTS
        # SIGTERM and SIGINT (even where a shell started the command with SIGINT
        # ignored) raise here, stop every service, and exit 143 or 130
        # (ml.cli.error_handling.stop_on_signals)
        with console.status(
            f"preparing Airflow's metadata under {settings.airflow_home}"
        ):
            services = start_services(
                settings, host, port, components=components, schedule=schedule
            )
        try:
            with console.status(
                f"starting {', '.join(components)} (logs: {services.log_dir})"
            ):
                started = time.perf_counter()
                services.wait_until_ready(timeout=600)
            credentials = login(settings)
            console.print(
                f"Airflow is up in {time.perf_counter() - started:.0f}s: "
                f"[bold]{services.url}[/]\n"
                f"  sign in as [bold]{credentials.username}[/] with password "
                f"[bold]{credentials.password}[/] (kept in "
                f"{credentials.passwords_file})\n"
                f"  Loopline pages: {services.url}/plugin/loopline "
                "(the Loopline entry of the navigation)\n"
                + (f"  MLflow UI: {settings.mlflow_ui_url}\n" if mlflow else "")
                + f"  DAGs from {settings.dags_dir}; calendar schedule "
                + ("on" if schedule else "off (trigger runs or backfill)")
                + f"\n  logs: {services.log_dir} (tasks: "
                f"{settings.airflow_home / 'logs'})\n"
                "Ctrl-C stops every process."
            )
            while not (failed := services.failed()):
                time.sleep(1)
            console.print(
                f"[red]stopped: {', '.join(failed)} exited[/] (exit codes "
                f"{failed}); see {services.log_dir}"
            )
            raise typer.Exit(1)
        except KeyboardInterrupt:
            console.print("stopping Airflow")
            raise
        finally:
            services.stop()
