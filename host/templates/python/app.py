"""{{name}}: a wasmgate plugin.

Adds `x-greeting` to every request on its way upstream and `x-plugin: {{name}}` to every
response. Config: `{ greeting = "hello" }` (optional).
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports.types import Action_Continue, ConfigError, Hooks

# componentize-py creates a fresh `Handler` for every call: keep configured state at module
# level (one per instance, set once by `configure`).
greeting = "hello"


class Handler(exports.Handler):
    def configure(self, config: str) -> Hooks:
        global greeting
        cfg = json.loads(config)
        unknown = sorted(set(cfg) - {"greeting"})
        if unknown:
            raise Err(ConfigError(key=unknown[0], message="unknown key; expected `greeting`"))
        value = cfg.get("greeting", "hello")
        if not isinstance(value, str) or not value.isprintable() or not value:
            raise Err(ConfigError(key="greeting", message="expected text without control characters"))
        greeting = value
        return Hooks.REQUEST | Hooks.RESPONSE

    def on_request(self, req, ctx):
        req.set_header("x-greeting", greeting)
        return Action_Continue()

    def on_response(self, req, resp, ctx):
        resp.set_header("x-plugin", "{{name}}")
