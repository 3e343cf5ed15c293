"""WSM's REST API, security layer and live dashboard (Starlette, served by uvicorn in the
engine's process). The composition root (`engine/cli.py`, `run.py`, `demo.py`) builds it:

    app = create_app(manager, secret=secret)
    async with ApiServer(app, host=..., port=...):
        ...
"""

from api.app import create_app
from api.auth import issue_token
from api.server import ApiServer

__all__ = ["ApiServer", "create_app", "issue_token"]
