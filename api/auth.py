"""Bearer tokens: HS256 JWTs with Supabase's claims (`sub`, `role`, `exp`, `aud`).

The algorithm is pinned (a token that names another, `none` included, is refused), `exp` and
`sub` are required, the audience must match, and only `role: authenticated` is let in: the
API acts for platform users, never as a service.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from uuid import UUID

import jwt

ALGORITHM = "HS256"


class TokenError(Exception):
    """Why a token was refused (the message is safe to show: it never echoes the token)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for."""

    user_id: UUID
    key: str  # a digest of the token: the rate limiter's key
    expires_at: float
    claims: dict[str, object]


class TokenVerifier:
    def __init__(
        self, secret: str, *, audience: str, issuer: str | None = None, leeway: float = 5.0
    ) -> None:
        self._secret = secret
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway

    def __repr__(self) -> str:
        return f"TokenVerifier(audience={self._audience!r}, issuer={self._issuer!r})"

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError(f"malformed token: {exc}") from None
        if header.get("alg") != ALGORITHM:
            raise TokenError(f"token algorithm must be {ALGORITHM}")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.InvalidAudienceError:
            raise TokenError("token audience is wrong") from None
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token: {exc}") from None
        if claims.get("role") != "authenticated":
            raise TokenError("token role must be 'authenticated'")
        try:
            user = UUID(str(claims["sub"]))
        except ValueError:
            raise TokenError("token subject is not a user id") from None
        key = hashlib.sha256(token.encode()).hexdigest()[:32]
        return Principal(user, key, float(claims["exp"]), claims)


def issue_token(
    secret: str,
    user_id: UUID | str,
    *,
    audience: str = "authenticated",
    issuer: str | None = None,
    ttl: float = 3600.0,
    now: float | None = None,
) -> str:
    """A token for `user_id` (for local use: `wsm token`, the demo, tests)."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {
        "sub": str(UUID(str(user_id))),
        "role": "authenticated",
        "aud": audience,
        "iat": issued,
        "exp": issued + int(ttl),
    }
    if issuer is not None:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm=ALGORITHM)
