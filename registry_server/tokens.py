"""Token helpers for the CLI (``mlops token create``).

Example:
    >>> from registry_server.tokens import create_token
    >>> with db.session() as session:                       # doctest: +SKIP
    ...     issued = create_token(session, "ann", ["approver"])
    >>> issued.token                                         # doctest: +SKIP
    'Xy...'
"""

from __future__ import annotations

from registry_server.services.auth import IssuedToken, create_token, hash_token

__all__ = ["IssuedToken", "create_token", "hash_token"]
