"""Where the API's JWT secret comes from: the configuration (`api.jwt_secret`, or
`WSM_API_JWT_SECRET`), else a random one kept in WSM's data folder for local use (created once,
readable by its owner only), so that `wsm token` and a restarted engine agree."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from engine.config import ApiConfig


def local_secret_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "wsm" / "api-jwt-secret"


def resolve_secret(config: ApiConfig) -> tuple[str, str]:
    """(secret, where it came from). The secret itself is never printed or logged."""
    if config.jwt_secret:
        return config.jwt_secret, "api.jwt_secret"
    path = local_secret_path()
    try:
        return path.read_text().strip(), str(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret, str(path)
