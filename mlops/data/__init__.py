"""Dataset versions from DVC (path + md5 + git rev + remote), and reading data at a rev.

Example:
    >>> from mlops.data import read_dataframe, version
    >>> ds = version("data/train.csv")  # doctest: +SKIP
    >>> df = read_dataframe(ds)  # doctest: +SKIP
"""

from mlops.data._remote import DataNotInCache, DataNotInRemote, fetch, push, read_fetched
from mlops.data._version import DatasetVersion, open, read_dataframe, version

__all__ = [
    "DataNotInCache",
    "DataNotInRemote",
    "DatasetVersion",
    "fetch",
    "open",
    "push",
    "read_dataframe",
    "read_fetched",
    "version",
]
