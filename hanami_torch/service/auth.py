"""Who is asking and what they may do: passwords, tokens, login rate limits and the policy.

* Passwords are hashed with ``hashlib.scrypt`` (a memory-hard KDF) and a random salt per user.
* Tokens are JWTs signed with HS256 and carry only the user id, the project, an id (``jti``) and
  the times.  Every request looks the user, their membership and the token id up in the
  database, so deleting a user, demoting them or logging out takes effect at once.
* The policy (``policy.json`` beside this file, or ``--policy FILE``) lists for each role the
  operations (the route names of the OpenAPI document) it may call; anything not listed is denied.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import jwt

from .errors import Forbidden, NotFound, TooManyRequests, Unauthorized
from .store import Scope, Store

ROLES = ("admin", "project_admin", "member", "user")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64 parts) for storing; compare with :func:`check_password`."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, maxmem=64 * 1024 * 1024, **_SCRYPT)
    parts = (str(_SCRYPT["n"]), str(_SCRYPT["r"]), str(_SCRYPT["p"]),
             base64.b64encode(salt).decode(), base64.b64encode(digest).decode())
    return "scrypt$" + "$".join(parts)


def check_password(password: str, stored: str | None) -> bool:
    """Constant-time check; a missing user (``stored is None``) costs as much as a wrong password."""
    if stored is None:
        hash_password(password)
        return False
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                                dklen=len(expected), maxmem=64 * 1024 * 1024)
    except ValueError:
        return False
    return kind == "scrypt" and hmac.compare_digest(actual, expected)


@dataclass(frozen=True)
class Principal:
    """The caller of one request, as the database says now."""

    user_id: str
    name: str
    is_admin: bool
    project_id: str | None
    role: str
    jti: str
    expires_at: float

    @property
    def scope(self) -> Scope:
        return Scope(self.user_id, self.project_id, self.role)


class Policy:
    """Role -> allowed operation ids, default deny.  ``"*"`` allows every operation."""

    def __init__(self, rules: dict[str, list[str]]):
        unknown = sorted(set(rules) - set(ROLES))
        if unknown:
            raise ValueError(f"policy names unknown role(s) {unknown}; the roles are {list(ROLES)}")
        self.rules = {role: frozenset(operations) for role, operations in rules.items()}

    @classmethod
    def from_file(cls, path: str | Path | None = None) -> Policy:
        path = Path(path) if path is not None else Path(__file__).with_name("policy.json")
        data = json.loads(path.read_text())
        return cls({role: list(operations) for role, operations in data["roles"].items()})

    def allows(self, role: str, operation: str) -> bool:
        allowed = self.rules.get(role, frozenset())
        return "*" in allowed or operation in allowed

    def check(self, principal: Principal, operation: str) -> None:
        if not self.allows(principal.role, operation):
            hint = "log in with a project_id" if principal.role == "user" else "ask an admin"
            raise Forbidden(f"the role {principal.role!r} may not use {operation}; {hint}")


class LoginLimiter:
    """Counts failed logins per user id and per client address in a sliding window."""

    def __init__(self, per_user: int = 5, per_address: int = 20, window_s: float = 60.0):
        self.limits = {"user": per_user, "address": per_address}
        self.window_s = window_s
        self._failures: dict[tuple[str, str], deque] = {}
        self._lock = threading.Lock()

    def check(self, user_id: str, address: str) -> None:
        current = time.monotonic()
        with self._lock:
            for key in (("user", user_id), ("address", address)):
                failures = self._failures.get(key)
                while failures and failures[0] < current - self.window_s:
                    failures.popleft()
                if failures is not None and len(failures) >= self.limits[key[0]]:
                    wait = int(failures[0] + self.window_s - current) + 1
                    raise TooManyRequests(
                        f"too many failed logins; try again in {wait} s",
                        headers={"Retry-After": str(wait)},
                    )

    def failed(self, user_id: str, address: str) -> None:
        current = time.monotonic()
        with self._lock:
            if len(self._failures) > 10_000:  # forget keys whose failures are all old
                self._failures = {key: failures for key, failures in self._failures.items()
                                  if failures and failures[-1] >= current - self.window_s}
            for key in (("user", user_id), ("address", address)):
                self._failures.setdefault(key, deque()).append(current)

    def succeeded(self, user_id: str) -> None:
        with self._lock:
            self._failures.pop(("user", user_id), None)


class Authenticator:
    """Issues tokens and turns a ``Bearer`` header into a :class:`Principal`."""

    def __init__(self, store: Store, secret: bytes, token_lifetime_s: float, limiter: LoginLimiter | None = None):
        if len(secret) < 32:
            raise ValueError("the token secret must be at least 32 bytes; write a longer one to HANAMI_SECRET_FILE")
        self.store = store
        self.secret = secret
        self.token_lifetime_s = token_lifetime_s
        self.limiter = limiter or LoginLimiter()
        #: bumped on every change that can end a session, so open sockets re-check only then
        self.generation = 0

    def changed(self) -> None:
        self.generation += 1

    def login(self, user_id: str, password: str, project_id: str | None, address: str) -> tuple[str, Principal]:
        self.limiter.check(user_id, address)
        user = self.store.find_user(user_id)
        if not check_password(password, user["password_hash"] if user else None):
            self.limiter.failed(user_id, address)
            raise Unauthorized("unknown user or wrong password")
        self.limiter.succeeded(user_id)
        if project_id is None and not user["is_admin"]:
            memberships = self.store.memberships_of_user(user_id)
            project_id = memberships[0]["project_id"] if memberships else None
        return self.issue(user, project_id)

    def switch(self, principal: Principal, project_id: str | None) -> tuple[str, Principal]:
        """A new token of the same user for another project (the old token stays valid)."""
        user = self.store.find_user(principal.user_id)
        if user is None:
            raise Unauthorized("the user of this token no longer exists")
        if project_id is not None and self.store.find_project(project_id) is None:
            raise NotFound(f"no project {project_id!r}")
        if not user["is_admin"] and project_id is not None and self.store.find_membership(user["id"], project_id) is None:
            raise Forbidden(f"you are not a member of project {project_id!r}")
        return self.issue(user, project_id)

    def issue(self, user: dict, project_id: str | None) -> tuple[str, Principal]:
        issued = time.time()
        claims = {"sub": user["id"], "pid": project_id, "iat": int(issued),
                  "exp": int(issued + self.token_lifetime_s), "jti": secrets.token_urlsafe(16)}
        principal = self._principal(user, project_id, claims)
        token = jwt.encode(claims, self.secret, algorithm="HS256")
        return token, principal

    def authenticate(self, header: str | None) -> Principal:
        """The principal of an ``Authorization: Bearer <token>`` header, checked against the database."""
        if not header:
            raise Unauthorized("missing token: send 'Authorization: Bearer <token>' (POST /v1/token gives one)")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        return self.check_token(token.strip())

    def check_token(self, token: str) -> Principal:
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"],
                                options={"require": ["exp", "iat", "sub", "jti"]})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired; log in again") from None
        except jwt.PyJWTError:
            raise Unauthorized("invalid token; log in again") from None
        if not isinstance(claims.get("sub"), str) or not isinstance(claims.get("jti"), str):
            raise Unauthorized("invalid token; log in again")
        if self.store.is_revoked(claims["jti"]):
            raise Unauthorized("the token was revoked (logged out); log in again")
        user = self.store.find_user(claims["sub"])
        if user is None:
            raise Unauthorized("the user of this token no longer exists")
        project_id = claims.get("pid")
        if project_id is not None and not isinstance(project_id, str):
            raise Unauthorized("invalid token; log in again")
        return self._principal(user, project_id, claims)

    def logout(self, principal: Principal) -> None:
        self.store.revoke_token(principal.jti, principal.expires_at)
        self.changed()

    def _principal(self, user: dict, project_id: str | None, claims: dict) -> Principal:
        if user["is_admin"]:
            role = "admin"
            # an admin may work in any project that exists
            if project_id is not None and self.store.find_project(project_id) is None:
                raise Unauthorized(f"project {project_id!r} does not exist (any more); log in again")
        elif project_id is None:
            role = "user"
        else:
            membership = self.store.find_membership(user["id"], project_id)
            if membership is None:
                raise Unauthorized(f"user {user['id']!r} is not a member of project {project_id!r} (any more); log in again")
            role = membership["role"]
        return Principal(user["id"], user["name"], bool(user["is_admin"]), project_id, role,
                         claims["jti"], float(claims["exp"]))


def load_secret(path: str | Path | None, home: Path) -> tuple[bytes, bool]:
    """The HS256 secret and whether it was configured (``HANAMI_SECRET_FILE``) rather than made
    here.  Without a file, a random secret is created once in ``HANAMI_HOME/token_secret`` (0600)."""
    if path is not None:
        secret = Path(path).read_bytes().strip()
        return secret, True
    generated = home / "token_secret"
    if not generated.exists():
        generated.touch(mode=0o600)
        generated.write_text(secrets.token_hex(32))
    return generated.read_bytes().strip(), False
