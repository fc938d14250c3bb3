"""The distribution name and the install hints the library prints.

The package is imported as ``anyml`` but published as ``anyml-nn`` (the name ``anyml`` on the package
index belongs to an unrelated project). Every hint names both ways to get an extra: from the index and
from a clone of the repository.
"""

from __future__ import annotations

DIST_NAME = "anyml-nn"


def install_hint(extra: str) -> str:
    """The command that installs one extra of this project, from the index or from a clone.

    Examples
    --------
    >>> from anyml._dist import install_hint
    >>> print(install_hint("torch"))
    pip install 'anyml-nn[torch]' (from a clone: pip install -e '.[torch]')
    """
    return f"pip install '{DIST_NAME}[{extra}]' (from a clone: pip install -e '.[{extra}]')"
