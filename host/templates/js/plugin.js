// {{name}}: a wasmgate plugin.
//
// Adds `x-greeting` to every request on its way upstream and `x-plugin: {{name}}` to every
// response. Config: `{ greeting = "hello" }` (optional).

let greeting = "hello";

export const handler = {
  // Runs once per instance. Throwing `{ key, message }` refuses the config.
  configure(config) {
    const cfg = JSON.parse(config);
    for (const key of Object.keys(cfg)) {
      if (key !== "greeting") throw { key, message: "unknown key; expected `greeting`" };
    }
    const value = cfg.greeting ?? "hello";
    if (typeof value !== "string" || value === "" || /[\x00-\x1f\x7f]/.test(value)) {
      throw { key: "greeting", message: "expected text without control characters" };
    }
    greeting = value;
    return { request: true, response: true };
  },

  onRequest(req, ctx) {
    req.setHeader("x-greeting", greeting);
    return { tag: "continue" };
  },

  onResponse(req, resp, ctx) {
    resp.setHeader("x-plugin", "{{name}}");
  },
};
