"""Who a user name denotes: one normal form for names, shared by the policy and the server.

Two spellings that a reader could take for the same person (``Ci-Bot``, ``ci-bot ``,
fullwidth ``\\uff43\\uff49-bot``, ``ci\\u200b-bot``) have the same identity, so the
requester rule and the distinct-people rule cannot be sidestepped by spelling a name
differently. New names must also pass :func:`check_user_name`: ASCII letters, digits
and ``. _ - @ +`` after NFKC, so look-alike letters of other scripts never make a second
person.

Example:
    >>> normalise_identity("  Ci-Bot ")
    'ci-bot'
    >>> normalise_identity("\\uff43\\uff49-bot")
    'ci-bot'
    >>> same_person("ANN", "ann")
    True
    >>> check_user_name("Ci-Bot")
    'Ci-Bot'
"""

from __future__ import annotations

import functools
import re
import unicodedata

from mlops.errors import GateError

__all__ = [
    "MAX_USER_NAME",
    "USER_NAME_PATTERN",
    "check_user_name",
    "normalise_identity",
    "same_person",
]

MAX_USER_NAME = 200
USER_NAME_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9._@+-]{0,198}[A-Za-z0-9])?$"
_NAME = re.compile(USER_NAME_PATTERN)
_SPACES = re.compile(r"\s+")


def _visible(text: str) -> str:
    """``text`` without format and control characters (zero-width spaces, BOM, bidi marks)."""
    return "".join(c for c in text if unicodedata.category(c) not in ("Cf", "Cc") or c.isspace())


def normalise_identity(name: str) -> str:
    """The identity a user name denotes: NFKC, invisible characters dropped, whitespace
    trimmed and collapsed, case folded.

    Compare identities, never raw names, wherever "the same person" matters.

    Example:
        >>> normalise_identity("Ann\\tSmith\\n")
        'ann smith'
    """
    return _normalised(name)


@functools.lru_cache(maxsize=4096)
def _normalised(name: str) -> str:
    # pure and called for every approval of every request shown: names repeat, so cache
    text = _visible(unicodedata.normalize("NFKC", name))
    text = _SPACES.sub(" ", text).strip()
    return unicodedata.normalize("NFKC", text.casefold())


def same_person(a: str, b: str) -> bool:
    """True if the user names ``a`` and ``b`` denote the same identity.

    Example:
        >>> same_person("ci-bot ", "Ci-Bot"), same_person("ann", "bob")
        (True, False)
    """
    return normalise_identity(a) == normalise_identity(b)


def check_user_name(name: str) -> str:
    """``name`` in NFKC form if it is a valid new user name, else :class:`GateError`.

    Valid: 1 to 200 ASCII letters, digits and ``. _ - @ +``, starting and ending with a
    letter or digit (after NFKC, so fullwidth letters are accepted as their ASCII form).
    Whitespace, invisible characters and letters of other scripts are refused.

    Example:
        >>> check_user_name("\\uff43\\uff49-bot")
        'ci-bot'
        >>> try:
        ...     check_user_name("ci-bot ")
        ... except GateError as err:
        ...     print(err.code)
        gate_error
    """
    text = unicodedata.normalize("NFKC", name) if isinstance(name, str) else ""
    if _NAME.fullmatch(text) and len(text) <= MAX_USER_NAME:
        return text
    bad = sorted({f"U+{ord(c):04X}" for c in text if not re.fullmatch(r"[A-Za-z0-9._@+-]", c)})
    why = f"it contains {', '.join(bad)}" if bad else "it must start and end with a letter or digit"
    if not text:
        why = "it is empty"
    elif len(text) > MAX_USER_NAME:
        why = f"it is longer than {MAX_USER_NAME} characters"
    raise GateError(
        f"User name {name!r} is not valid: {why}.",
        hint="Use 1-200 ASCII letters, digits and . _ - @ + (e.g. ci-bot), "
        "starting and ending with a letter or digit.",
    )
