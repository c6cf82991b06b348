"""The Loopline pages inside the Airflow UI (a FastAPI app the plugin mounts).

``/loopline/`` lists what Loopline has published under ``LOOPLINE_HOME`` and serves
it: the HTML report (``loopline report``), the GX Data Docs the gates render, the
dbt docs (``dbt docs generate`` into the dbt target directory), and a link to the
MLflow UI. A page that has not been generated yet is a short explanation of how to
generate it (status 404).

Airflow does not protect a plugin's FastAPI app. Every route here depends on
:func:`require_viewer`, which resolves the user exactly as Airflow's own API does
(``airflow.api_fastapi.core_api.security.get_user``: a ``Bearer`` token, else the
``_token`` cookie that the UI sets at login) and then asks the configured auth
manager whether that user may see the custom view ``Loopline``. No token is a 401,
an invalid token or a user without the permission a 403.

Airflow is imported on the first request only: every Airflow process loads the
plugins, and only the api-server serves this app.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import FileResponse, HTMLResponse, Response

from ml.config.settings import Settings, get_settings

URL_PREFIX = "/loopline"
RESOURCE_NAME = "Loopline"
# dbt docs' index.html loads these two; nothing else of the target dir is served.
DBT_DOCS_FILES = ("index.html", "manifest.json", "catalog.json")


async def require_viewer(request: Request) -> None:
    """Refuse the request unless Airflow's auth manager lets its user see the
    ``Loopline`` view (401 without credentials, 403 otherwise)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    credentials = await bearer_scheme(request)
    user = await get_user(request, _oauth_token=None, bearer_credentials=credentials)
    allowed = get_auth_manager().is_authorized_custom_view(
        method="GET", resource_name=RESOURCE_NAME, user=user
    )
    if not allowed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden")


@dataclass(frozen=True)
class Page:
    """One published artefact and how to make it when it is missing."""

    key: str
    title: str
    what: str
    how: str


PAGES = (
    Page(
        "report",
        "Loopline report",
        "Value against the baselines, realized model metrics, learned uplift, "
        "drift, operations and retrain verdicts.",
        "Run <code>loopline report</code> (the demo writes it at its end).",
    ),
    Page(
        "data-docs",
        "GX Data Docs",
        "The Great Expectations results of the landing and mart gates of the "
        "recent run dates.",
        "The nightly <code>validate_landing</code> and <code>validate_marts</code> "
        "tasks render them (so do <code>loopline rebuild</code> and "
        "<code>loopline run</code>).",
    ),
    Page(
        "dbt-docs",
        "dbt docs",
        "The dbt project's models, columns, tests and lineage.",
        "Run <code>loopline docs</code> (<code>dbt docs generate</code> into the "
        "dbt target directory).",
    ),
)


def _layout(title: str, body: str) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2rem;max-width:52rem;"
        "line-height:1.5;color:#1a202c}li{margin:.6rem 0}code{background:#edf2f7;"
        "padding:0 .25rem;border-radius:3px}.missing{color:#a0aec0}"
        "a{color:#2b6cb0}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def _missing(page: Page, path: Path) -> HTMLResponse:
    body = (
        f"<p>{page.title} has not been generated yet: there is no "
        f"<code>{html.escape(str(path))}</code>.</p><p>{page.how}</p>"
        "<p><a href='./'>Back to Loopline</a></p>"
    )
    return HTMLResponse(
        _layout(f"{page.title}: not generated yet", body),
        status_code=status.HTTP_404_NOT_FOUND,
    )


def _inside(root: Path, relative: str) -> Path | None:
    """``root / relative`` if it is a file inside ``root`` (no path escapes)."""
    root = root.resolve()
    path = (root / relative).resolve()
    if path.is_file() and path.is_relative_to(root):
        return path
    return None


def _index(settings: Settings) -> str:
    present = {
        "report": settings.report_path.is_file(),
        "data-docs": (settings.data_docs_dir / "index.html").is_file(),
        "dbt-docs": (settings.dbt_target_dir / "index.html").is_file(),
    }
    links = "\n".join(
        f"<li><a href='{page.key}/'>{page.title}</a>"
        + ("" if present[page.key] else " <span class='missing'>(not yet)</span>")
        + f"<br>{page.what}</li>"
        for page in PAGES
    )
    mlflow = html.escape(settings.mlflow_ui_url)
    return _layout(
        "Loopline",
        f"<p>State under <code>{html.escape(str(settings.root))}</code>.</p>"
        f"<ul>{links}\n<li><a href='{mlflow}' target='_blank' rel='noopener'>"
        f"MLflow UI</a> ({mlflow}, opens in a new tab)<br>Experiment "
        "<code>loopline-churn</code> and the registered model's champion and "
        "challengers. <code>loopline airflow</code> starts it (or "
        "<code>mlflow ui --backend-store-uri "
        f"{html.escape(settings.mlflow_tracking_uri)}</code>).</li></ul>",
    )


def create_app(settings: Callable[[], Settings] = get_settings) -> FastAPI:
    """The app mounted at :data:`URL_PREFIX`; ``settings`` is read per request."""
    app = FastAPI(
        title="Loopline",
        dependencies=[Depends(require_viewer)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    pages = {page.key: page for page in PAGES}

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return _index(settings())

    @app.get("/report/")
    def report() -> Response:
        path = settings().report_path
        if not path.is_file():
            return _missing(pages["report"], path)
        return FileResponse(path, media_type="text/html")

    @app.get("/data-docs/{relative:path}")
    def data_docs(relative: str) -> Response:
        root = settings().data_docs_dir
        path = _inside(root, relative or "index.html")
        if path is None:
            return _missing(pages["data-docs"], root / (relative or "index.html"))
        return FileResponse(path)

    @app.get("/dbt-docs/{name}")
    @app.get("/dbt-docs/", include_in_schema=False)
    def dbt_docs(name: str = "index.html") -> Response:
        if name not in DBT_DOCS_FILES:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
        path = settings().dbt_target_dir / name
        if not path.is_file():
            return _missing(pages["dbt-docs"], path)
        return FileResponse(path)

    return app


app = create_app()
