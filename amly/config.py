"""Where amly talks to and where it keeps its state: endpoints, data dirs, the secret token type.

Endpoints come from the same environment variables as the official tool
(``MAPILLARY_GRAPH_API_ENDPOINT``, ``MAPILLARY_UPLOAD_ENDPOINT``), ours for tiles
(``MAPILLARY_TILES_ENDPOINT``), or one ``--endpoint URL`` naming an amly server, which serves
every surface under one base (see :meth:`Endpoints.local`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

GRAPH_DEFAULT = "https://graph.mapillary.com"
UPLOAD_DEFAULT = "https://rupload.facebook.com/mapillary_public_uploads"
TILES_DEFAULT = "https://tiles.mapillary.com"
#: The public client (app) token the official tool ships; used only to authorise /login.
CLIENT_TOKEN_DEFAULT = "MLY|5675152195860640|6b02c72e6e3c801e5603ab0495623282"


@dataclasses.dataclass(frozen=True)
class Endpoints:
    """Base URLs of the three surfaces (no trailing slash)."""

    graph: str = GRAPH_DEFAULT
    upload: str = UPLOAD_DEFAULT
    tiles: str = TILES_DEFAULT

    @classmethod
    def local(cls, base: str) -> Endpoints:
        """The layout of an ``amly server``: Graph at the root, uploads under ``/upload``,
        tiles under ``/tiles``.

        >>> Endpoints.local("http://127.0.0.1:8080/").upload
        'http://127.0.0.1:8080/upload'
        """
        base = base.rstrip("/")
        return cls(graph=base, upload=f"{base}/upload", tiles=f"{base}/tiles")

    @classmethod
    def from_env(cls, endpoint: str | None = None) -> Endpoints:
        """``endpoint`` (an amly server base) wins; else the environment; else the real service."""
        if endpoint:
            return cls.local(endpoint)
        env = os.environ
        return cls(
            graph=env.get("MAPILLARY_GRAPH_API_ENDPOINT", GRAPH_DEFAULT).rstrip("/"),
            upload=env.get("MAPILLARY_UPLOAD_ENDPOINT", UPLOAD_DEFAULT).rstrip("/"),
            tiles=env.get("MAPILLARY_TILES_ENDPOINT", TILES_DEFAULT).rstrip("/"),
        )


class Secret:
    """A token that cannot leak by accident: ``str()``/``repr()`` show only a masked form.

    >>> t = Secret("MLY|123|abcdef0123456789")
    >>> str(t), t.reveal()[:3]
    ('***6789', 'MLY')
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value or not value.strip():
            raise ValueError("empty token")
        self._value = value.strip()

    def reveal(self) -> str:
        """The real value: only for the ``Authorization`` header and the 0600 profile file."""
        return self._value

    def __str__(self) -> str:
        return "***" + self._value[-4:] if len(self._value) >= 12 else "***"

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def data_dir() -> Path:
    """Per-user state (journals): ``$AMLY_HOME``, else ``$XDG_DATA_HOME/amly``."""
    if home := os.environ.get("AMLY_HOME"):
        return Path(home)
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(xdg) / "amly"


def config_dir() -> Path:
    """Per-user configuration (profiles): ``$AMLY_HOME``, else ``$XDG_CONFIG_HOME/amly``."""
    if home := os.environ.get("AMLY_HOME"):
        return Path(home)
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(xdg) / "amly"
