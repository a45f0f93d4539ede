"""Secrets masked before anything is logged or written: the one policy of the package.

What is a secret (docs/design.md, "Secrets"):

- credentials inside a URL (``scheme://user:pw@``), as written, as Hydra escapes an override and
  percent-encoded;
- the value of a URL query or fragment parameter whose name is secret-looking (``?token=``,
  ``&password=``, ``#access_token=``, ``?X-Amz-Signature=``...);
- the credential after ``Bearer``, ``Basic`` or ``Token`` (an HTTP Authorization header);
- the value (6 characters or more) of every environment variable whose name is secret-looking;
- the passwords of tracking URIs seen in this process (:func:`add_secret`).

A name is secret-looking (:func:`secret_name`) when it contains PASSWORD, PASSWD, TOKEN, SECRET,
CREDENTIAL, WEBHOOK, APIKEY or PRIVATE, or when one of its parts (split at ``_ - .``) is PASS,
PWD, KEY, AUTH, SIG, SIGNATURE, DSN or COOKIE (``DB_PASS``, ``OPENAI_KEY``, ``HF_HUB_KEY``,
``SLACK_WEBHOOK_URL``); ``PWD`` and ``OLDPWD`` themselves are the shell's folders, not secrets.
A documented pattern list rather than ``detect-secrets``: that tool scans files for likely
secrets by entropy, it does not mask known ones in a line of text.

A leaf module: the records, the context tags and the tracking all use it."""

from __future__ import annotations

import os
import re
from urllib.parse import quote

_SECRET_WORDS = ("PASSWORD", "PASSWD", "TOKEN", "SECRET", "CREDENTIAL", "WEBHOOK", "APIKEY", "PRIVATE")
_SECRET_PARTS = {"PASS", "PWD", "KEY", "AUTH", "SIG", "SIGNATURE", "DSN", "COOKIE"}
_NOT_SECRET = {"PWD", "OLDPWD"}
# a query parameter: ?name=value / &name=value (also Hydra-escaped \= and percent-encoded)
_QUERY_PARAM = re.compile(
    r"(?P<pre>(?:[?&;#]|%3[fF]|%26|%23)(?P<name>[A-Za-z0-9_.\-]+)(?:\\*=|%3[dD]))(?P<value>(?:(?!%26)[^&#\s'\"\\,;)\]}])+)"
)
# credentials inside a URL, as written (scheme://user:pw@), as Hydra escapes an override
# (scheme\:\/\/user\:pw@) and percent-encoded (scheme%3A%2F%2Fuser%3Apw%40)
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*(?:\\*:|%3[aA])(?:\\*/|%2[fF]){2})"
    r"(?P<userinfo>(?:(?!%40)[^/\s])+)(?P<at>@|%40)"  # greedy: a password may hold an @
)
# a credential after an HTTP auth scheme (an "Authorization: Bearer ..." header quoted in an error)
_AUTH_HEADER = re.compile(r"(?P<scheme>\b(?:Bearer|Basic|Token)\s+)(?P<cred>[A-Za-z0-9._~+/=-]{8,})", re.I)
_SECRETS: set[str] = set()  # values known to be secret in this process (a URI's password)


def secret_name(name: str) -> bool:
    """Whether an environment variable or a query parameter called ``name`` holds a secret."""
    upper = name.upper()
    if upper in _NOT_SECRET:
        return False
    if any(word in upper for word in _SECRET_WORDS):
        return True
    return any(part in _SECRET_PARTS for part in re.split(r"[_.\-]+", upper))


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
    """Mask secrets before anything is logged or printed (the module's policy): credentials inside
    URLs, secret-looking query parameters, the passwords of tracking URIs seen in this process,
    and the value of every environment variable with a secret-looking name."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}***{m.group('at')}", text)
    text = _AUTH_HEADER.sub(lambda m: m.group("scheme") + "***", text)
    text = _QUERY_PARAM.sub(lambda m: m.group("pre") + ("***" if secret_name(m.group("name")) else m.group("value")), text)
    secrets = set(_SECRETS)
    for name, value in os.environ.items():
        if value and len(value) >= 6 and secret_name(name):
            secrets.add(value)
    for value in secrets:
        for form in _forms(value):
            if form:
                text = text.replace(form, "***")
    return text
