"""Problem details in the client's language (issue 17): an API request with
``Accept-Language: cy`` gets the Welsh ``title`` and, where the catalogue has it, the Welsh
``detail``; the ``code`` (the contract) never changes, and neither does anything else of the
body. A translated problem says ``Content-Language``; every problem says
``Vary: Accept-Language``. English is the default, as before.

The words are messages of the console's catalogue (``timebank/console/locale``), marked
here with ``N_`` so ``pybabel extract`` finds them. A detail made from values (a name, a
field) stays English: the stable code and the fields are what a program reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Request, Response

from timebank.i18n import SOURCE, negotiate, translated


def N_(message: str) -> str:  # the gettext convention: a message marked for extraction
    return message


# every title of a problem (timebank.errors and timebank.web.problems)
TITLES = (
    N_("Error"),
    N_("Unauthorized"),
    N_("Forbidden"),
    N_("Not found"),
    N_("Validation error"),
    N_("Balance limit exceeded"),
    N_("Party inactive"),
    N_("Already reversed"),
    N_("Not reversible"),
    N_("Not pending"),
    N_("Idempotency key reused"),
    N_("Idempotency key in flight"),
    N_("Duplicate"),
    N_("Sheet import closed"),
    N_("Batch aborted"),
    N_("Rate limited"),
    N_("Report timed out"),
    N_("Request timeout"),
    N_("Malformed request"),
    N_("Method not allowed"),
    N_("Payload too large"),
    N_("Header too large"),
    N_("Internal error"),
    N_("Service unavailable"),
    N_("Not ready"),
    N_("HTTP error"),
)

# the fixed details (the same words every time); others stay English
DETAILS = (
    N_("Send Authorization: Bearer <api key>"),
    N_("Unknown API key"),
    N_("This API key was revoked"),
    N_("This API key has expired"),
    N_("No such time bank"),
    N_("No such member in this time bank"),
    N_("No such organisation in this time bank"),
    N_("No such exchange in this time bank"),
    N_("No such account in this time bank"),
    N_("No such sheet import in this time bank"),
    N_("No such API key"),
    N_("This exchange was already reversed"),
    N_("A reversal cannot be reversed"),
    N_("This exchange was decided by someone else just now"),
    N_("This exchange is expired, not pending"),
    N_("A party is no longer active (suspended, left or erased)"),
    N_("An organisation party is no longer active"),
    N_("A member key cannot override limits"),
    N_("A member key may read only its own member"),
    N_("A member key may edit only its own profile"),
    N_("A member key lists its own exchanges only"),
    N_("Only a global admin key can do this"),
    N_("Database unreachable"),
    N_("Internal error"),
    N_("An unexpected error occurred; see request_id."),
    N_("A unique field is already taken"),
)


API_MESSAGES = frozenset(TITLES + DETAILS)  # only these: a console string is not an API word


def localise(request: Request[Any, Any, Any], response: Response[Any]) -> Response[Any]:
    """The problem ``response`` in the request's language, where the catalogue has it.
    (Its ``Vary: Accept-Language`` is added to every problem response in one place, by
    :func:`timebank.web.security.add_security_headers`.)"""
    body = response.content
    if not isinstance(body, dict):
        return response
    lang = negotiate(request.headers.get("accept-language"))
    if lang == SOURCE:
        return response
    done = False
    for key in ("title", "detail"):
        english = str(body.get(key, ""))
        text = translated(lang, english) if english in API_MESSAGES else None
        if text is not None:
            body[key] = text
            done = True
    if done:
        response.headers["Content-Language"] = lang
    return response


Handler = Callable[[Request[Any, Any, Any], Any], Response[Any]]


def localised(handler: Handler) -> Handler:
    """An exception handler whose problems follow ``Accept-Language``."""

    def answer(request: Request[Any, Any, Any], exc: Any) -> Response[Any]:
        return localise(request, handler(request, exc))

    answer.__name__ = getattr(handler, "__name__", "answer")
    return answer
