"""Which Postgres WSM uses: the configured one, or an embedded one it starts itself."""

from __future__ import annotations

import os
import subprocess
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Final

from engine.errors import DatabaseError

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

ENV_URL: Final = "WSM_DATABASE_URL"


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """`$XDG_DATA_HOME/wsm/pgdata`, or `~/.local/share/wsm/pgdata`: the user's, never the repo's."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME", "")
    if not os.path.isabs(base):  # the XDG spec ignores a relative path
        base = str(Path(env.get("HOME") or Path.home()) / ".local" / "share")
    return Path(base) / "wsm" / "pgdata"


class EmbeddedPostgres:
    """A Postgres server in `data_dir`, run by the `pgserver` package (its own binaries).

    `start()` creates the cluster on first use and returns its URL (a Unix socket, no TCP
    port); it reuses a server already running on the same directory. `stop()` stops the server
    unless another process still holds it (pgserver counts them); the data stays.
    """

    def __init__(self, data_dir: Path | None = None) -> None:
        self.data_dir = (data_dir or default_data_dir()).expanduser().resolve()
        self._server: PostgresServer | None = None

    def __repr__(self) -> str:
        state = "running" if self._server is not None else "stopped"
        return f"EmbeddedPostgres({str(self.data_dir)!r}, {state})"

    @property
    def url(self) -> str | None:
        return None if self._server is None else self._server.get_uri()

    def start(self) -> str:
        if self._server is None:
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            # pgserver resolves a runtime directory at import, and platformdirs warns when
            # XDG_RUNTIME_DIR is unset (containers, CI); its fallback under /tmp is fine.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
                from pgserver.postgres_server import get_server
            try:
                self._server = get_server(self.data_dir, cleanup_mode="stop")
            except (OSError, subprocess.SubprocessError, AssertionError) as exc:
                raise DatabaseError(
                    f"embedded Postgres in {self.data_dir} did not start ({exc}); "
                    f"its log is {self.data_dir / 'log'}"
                ) from exc
        return self._server.get_uri()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def resolve_database_url(
    configured_url: str | None,
    *,
    environ: Mapping[str, str] | None = None,
    embedded: EmbeddedPostgres | None = None,
) -> str:
    """The configured URL, else `WSM_DATABASE_URL`, else an embedded server's (started now).

    Pass `embedded` to keep the handle that stops it; without one, the server in the default
    data directory is used and pgserver stops it when this process exits.
    """
    env = os.environ if environ is None else environ
    url = configured_url or env.get(ENV_URL)
    if url:
        return url
    server = embedded if embedded is not None else EmbeddedPostgres(default_data_dir(env))
    return server.start()
