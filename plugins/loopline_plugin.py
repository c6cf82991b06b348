"""The Loopline entry in the Airflow UI's navigation (Airflow 3.1+ plugin).

A top-level **Loopline** nav item opens ``/loopline/`` in the UI (an external view
with a URL route, shown in an iframe). That page and everything under it (the
report, GX Data Docs, dbt docs, a link to the MLflow UI) are served by the FastAPI
app of :mod:`loopline_airflow.web`, mounted by the api-server and protected by
Airflow's own auth manager.

Airflow loads every ``.py`` file under ``plugins/`` as a top-level module; the
``loopline_airflow`` package is left out of that scan (``plugins/.airflowignore``)
and imported as the package it is.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from loopline_airflow.web import URL_PREFIX, app


class LooplinePlugin(AirflowPlugin):
    name = "loopline"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Loopline"}]
    external_views = [
        {
            "name": "Loopline",
            "href": f"{URL_PREFIX}/",
            "url_route": "loopline",
            "destination": "nav",
            "nav_top_level": True,
        }
    ]
