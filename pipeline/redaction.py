"""Secrets masked before anything is logged or written: credentials inside URLs, the passwords of
tracking URIs seen in this process, and the values of environment variables whose names say
they are secret.  A leaf module: the records, the context tags and the tracking all use it."""

from __future__ import annotations

import os
import re
from urllib.parse import quote

_SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|CREDENTIAL|AUTH)", re.I)
# credentials inside a URL, as written (scheme://user:pw@), as Hydra escapes an override
# (scheme\:\/\/user\:pw@) and percent-encoded (scheme%3A%2F%2Fuser%3Apw%40)
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*(?:\\*:|%3[aA])(?:\\*/|%2[fF]){2})"
    r"(?P<userinfo>(?:(?!%40)[^/@\s])+?)(?P<at>@|%40)"
)
_SECRETS: set[str] = set()  # values known to be secret in this process (a URI's password)


def has_url_credentials(text: str) -> bool:
    """Whether ``text`` holds a URL with ``user:password@`` (also escaped or percent-encoded)."""
    return _URL_CREDENTIALS.search(text) is not None


def add_secret(value: str | None) -> None:
    """Mask ``value`` (and its escaped forms) in everything :func:`redact` sees from now on."""
    if value and len(value) >= 3:
        _SECRETS.add(value)


def _forms(value: str) -> set[str]:
    return {value, quote(value, safe=""), re.sub(r"([:/=\\,'\"\[\]{}()])", r"\\\1", value)}


def redact(text: str) -> str:
    """Mask secrets before anything is logged: credentials inside URLs (``scheme://user:pw@``,
    also escaped), the passwords of tracking URIs seen in this process, and the value of every
    environment variable whose name says it is a secret."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}***{m.group('at')}", text)
    secrets = set(_SECRETS)
    for name, value in os.environ.items():
        if value and len(value) >= 6 and _SECRET_NAME.search(name):
            secrets.add(value)
    for value in secrets:
        for form in _forms(value):
            if form:
                text = text.replace(form, "***")
    return text
