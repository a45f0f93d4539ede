"""The schema of the tracking store (MLflow), and the checks of its URI."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import unquote

from pipeline.config.checks import ConfigError


@dataclass
class TrackingConfig:
    # empty: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db
    uri: str = ""
    artifact_location: str = "mlruns/artifacts"
    experiment: str = "embedding-pipeline"

    def __post_init__(self) -> None:
        problem = uri_problem(self.uri)
        if problem:
            raise ConfigError("tracking.uri", problem)

    def resolved_uri(self) -> str:
        """The store's URI, never with credentials in it: a ``user:password@`` part (from
        ``$MLFLOW_TRACKING_URI`` or ``python -m pipeline.sync --tracking-uri``) is moved into
        ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` of this process, where MLflow
        reads it, so that no MLflow message, record or artifact holds it."""
        uri = self.uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlruns/mlflow.db"
        return strip_credentials(uri)


# the stores MLflow's tracking client takes (a dialect may follow a '+': postgresql+psycopg2)
TRACKING_SCHEMES = ("http", "https", "sqlite", "file", "postgresql", "mysql", "mssql", "databricks", "databricks-uc", "uc")
_URI_USERINFO = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@:]*)(?::(?P<pw>[^/@]*))?@")


def uri_problem(uri: str) -> str | None:
    """Why a tracking URI is refused (None: fine); never repeats a credential."""
    if not uri:
        return None
    if "://" not in uri:
        return None  # a local folder: MLflow's file store
    scheme = uri.split("://", 1)[0]
    if scheme.split("+", 1)[0].lower() not in TRACKING_SCHEMES:
        return f"unknown scheme {scheme!r}; allowed: {', '.join(TRACKING_SCHEMES)} (or a local folder)"
    return None


def has_credentials(uri: str) -> bool:
    return bool(uri) and _URI_USERINFO.match(uri) is not None


def strip_credentials(uri: str) -> str:
    """``uri`` without its ``user:password@`` part, which goes into the environment variables
    MLflow reads (``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``; values already set there win)."""
    m = _URI_USERINFO.match(uri or "")
    if m is None:
        return uri

    from pipeline.core.redaction import add_secret

    user, pw = unquote(m.group("user") or ""), unquote(m.group("pw") or "")
    if user:
        os.environ.setdefault("MLFLOW_TRACKING_USERNAME", user)
    if pw:
        os.environ.setdefault("MLFLOW_TRACKING_PASSWORD", pw)
        add_secret(pw)
        add_secret(m.group("pw"))
    return m.group("scheme") + uri[m.end() :]
