"""request-signer: signs every request for the upstream with HMAC-SHA256.

The upstream can then tell that a request came through the gateway, unaltered, recently:

    x-signature: keyId="gw-1",ts=1763820000,headers="host content-type",sig="<base64>"

`sig` is HMAC-SHA256(secret, canonical) where `canonical` is these lines joined by "\n":

    METHOD
    /path
    query string (without "?", empty if none)
    ts (Unix seconds, from the gateway's clock)
    one "name:value" line per signed header (value empty when absent)
    hex SHA-256 of the body

A signature header the client sent is replaced, never passed on.

Config (route plugin entry):

    { use = "request-signer", config = { key_id = "gw-1", secret = "...", signed_headers = ["host", "content-type"] } }

    secret          required, at least 16 bytes (`config_files = { secret = "signing.key" }`
                    keeps it out of the config file)
    key_id          default "default"
    header          default "x-signature"
    signed_headers  default ["host"]
    max_body        bytes of body to sign, default 1048576; larger bodies are refused with 413
"""

import base64
import hashlib
import hmac
import json
import re
# hmac imports `warnings` lazily, on first use. componentize-py snapshots the modules imported
# while the component is built, so import it here.
import warnings  # noqa: F401

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import body_access, clock
from wit_world.imports.types import Action_Continue, ConfigError, Hooks

TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+$")
KNOWN_KEYS = {"secret", "key_id", "header", "signed_headers", "max_body"}

# componentize-py creates a fresh `Handler` for every call, so the configured signer lives at
# module level: one per instance, set once by `configure`.
signer = None


class Signer:
    def __init__(self, cfg):
        if not isinstance(cfg, dict):
            raise config_error(None, "the config must be a table")
        unknown = sorted(set(cfg) - KNOWN_KEYS)
        if unknown:
            raise config_error(unknown[0], f"unknown key; expected one of {', '.join(sorted(KNOWN_KEYS))}")
        secret = cfg.get("secret")
        if not isinstance(secret, str) or len(secret.encode()) < 16:
            raise config_error("secret", "required: a string of at least 16 bytes")
        self.secret = secret.strip().encode()
        self.key_id = expect_str(cfg, "key_id", "default")
        if '"' in self.key_id or "\\" in self.key_id:
            raise config_error("key_id", "must not contain quotes or backslashes")
        self.header = expect_str(cfg, "header", "x-signature").lower()
        if not TOKEN.match(self.header):
            raise config_error("header", f"`{self.header}` is not a valid header name")
        headers = cfg.get("signed_headers", ["host"])
        if not isinstance(headers, list):
            raise config_error("signed_headers", "expected a list of header names")
        self.signed_headers = []
        for i, name in enumerate(headers):
            if not isinstance(name, str) or not TOKEN.match(name.lower()):
                raise config_error(f"signed_headers[{i}]", f"{name!r} is not a valid header name")
            self.signed_headers.append(name.lower())
        max_body = cfg.get("max_body", 1 << 20)
        if not isinstance(max_body, int) or isinstance(max_body, bool) or max_body < 0:
            raise config_error("max_body", "expected a number of bytes")
        self.max_body = max_body

    def sign(self, req):
        ts = clock.now_millis() // 1000
        lines = [req.method(), req.path(), req.query() or "", str(ts)]
        for name in self.signed_headers:
            value = req.authority() if name == "host" else req.header(name)
            lines.append(f"{name}:{value or ''}")
        lines.append(hashlib.sha256(req.body() or b"").hexdigest())
        mac = hmac.new(self.secret, "\n".join(lines).encode(), hashlib.sha256).digest()
        return (
            f'keyId="{self.key_id}",ts={ts},headers="{" ".join(self.signed_headers)}",'
            f'sig="{base64.b64encode(mac).decode()}"'
        )


def expect_str(cfg, key, default):
    value = cfg.get(key, default)
    if not isinstance(value, str) or not value:
        raise config_error(key, "expected a non-empty string")
    return value


def config_error(key, message):
    return Err(ConfigError(key=key, message=message))


class Handler(exports.Handler):
    def configure(self, config: str) -> Hooks:
        global signer
        signer = Signer(json.loads(config))
        body_access.buffer(body_access.Message.REQUEST, signer.max_body)
        return Hooks.REQUEST

    def on_request(self, req, ctx):
        req.set_header(signer.header, signer.sign(req))
        return Action_Continue()

    def on_response(self, req, resp, ctx):
        pass
