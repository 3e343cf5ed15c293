"""ASGI middleware, one per file, outermost first: body_limit, authenticate, rate_limit,
allowlist. Only `/api/` paths are guarded; each refusal is a JSON error and an audit row."""
