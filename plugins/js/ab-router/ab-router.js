// ab-router: splits traffic between variants of a service, sticky per user.
//
// Each request is put in one variant, by weight. The choice hashes a stable key (a header such
// as `x-user-id`, else the variant cookie a previous response set, else the request id), so a
// user keeps seeing the same variant. The variant is passed upstream in a header, may prefix
// the path (so one upstream can serve `/v2/...` to variant b), is left in the request context
// for later plugins, and is returned to the client in a header and a cookie.
//
//   { use = "ab-router", config = { key_header = "x-user-id", variants = [
//       { name = "stable", weight = 90 },
//       { name = "canary", weight = 10, path_prefix = "/canary" } ] } }
//
//   variants     required: 1 to 16 of { name, weight (0-10000), path_prefix? }; weights sum > 0
//   key_header   request header with the user's identity (optional)
//   cookie       cookie that keeps the assignment, default "wg-variant" ("" disables it)
//   header       header naming the variant, upstream and to the client, default "x-variant"
//   salt         reshuffles the split for a new experiment, default ""

const KNOWN_KEYS = ["variants", "key_header", "cookie", "header", "salt"];
const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;
const COOKIE_MAX_AGE = 30 * 24 * 3600;

// One configured router per instance; `configure` runs once before any request.
let router = null;

class ConfigError extends Error {
  constructor(key, message) {
    super(message);
    this.payload = { key, message };
  }
}

function parseConfig(config) {
  if (typeof config !== "object" || config === null || Array.isArray(config)) {
    throw new ConfigError(undefined, "the config must be a table");
  }
  for (const key of Object.keys(config)) {
    if (!KNOWN_KEYS.includes(key)) {
      throw new ConfigError(key, `unknown key; expected one of ${KNOWN_KEYS.join(", ")}`);
    }
  }
  const variants = config.variants;
  if (!Array.isArray(variants) || variants.length === 0 || variants.length > 16) {
    throw new ConfigError("variants", "required: a list of 1 to 16 variants");
  }
  let total = 0;
  const seen = new Set();
  const parsed = variants.map((v, i) => {
    const at = `variants[${i}]`;
    if (typeof v !== "object" || v === null) throw new ConfigError(at, "expected a table");
    if (typeof v.name !== "string" || !/^[A-Za-z0-9_.-]{1,64}$/.test(v.name)) {
      throw new ConfigError(`${at}.name`, "expected 1 to 64 letters, digits, '_', '.' or '-'");
    }
    if (seen.has(v.name)) throw new ConfigError(`${at}.name`, `\`${v.name}\` is listed twice`);
    seen.add(v.name);
    if (!Number.isInteger(v.weight) || v.weight < 0 || v.weight > 10000) {
      throw new ConfigError(`${at}.weight`, "expected a whole number from 0 to 10000");
    }
    const prefix = v.path_prefix ?? "";
    if (typeof prefix !== "string" || (prefix !== "" && !/^\/[A-Za-z0-9._~\/-]*[^\/]$/.test(prefix))) {
      throw new ConfigError(`${at}.path_prefix`, "expected a path such as `/canary` (no trailing `/`)");
    }
    for (const key of Object.keys(v)) {
      if (!["name", "weight", "path_prefix"].includes(key)) {
        throw new ConfigError(`${at}.${key}`, "unknown key; expected name, weight or path_prefix");
      }
    }
    total += v.weight;
    return { name: v.name, weight: v.weight, prefix };
  });
  if (total === 0) throw new ConfigError("variants", "at least one variant needs a weight above 0");

  const header = optionalString(config, "header", "x-variant").toLowerCase();
  if (!TOKEN.test(header)) throw new ConfigError("header", `\`${header}\` is not a valid header name`);
  const keyHeader = optionalString(config, "key_header", "").toLowerCase();
  if (keyHeader !== "" && !TOKEN.test(keyHeader)) {
    throw new ConfigError("key_header", `\`${keyHeader}\` is not a valid header name`);
  }
  const cookie = optionalString(config, "cookie", "wg-variant");
  if (cookie !== "" && !/^[A-Za-z0-9_.-]+$/.test(cookie)) {
    throw new ConfigError("cookie", `\`${cookie}\` is not a valid cookie name`);
  }
  return { variants: parsed, total, header, keyHeader, cookie, salt: optionalString(config, "salt", "") };
}

function optionalString(config, key, fallback) {
  const value = config[key] ?? fallback;
  if (typeof value !== "string") throw new ConfigError(key, "expected a string");
  return value;
}

// 32-bit FNV-1a over the UTF-16 code units: stable across instances, builds and engines.
function fnv1a(text) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

function pick(key) {
  let point = fnv1a(`${router.salt}:${key}`) % router.total;
  for (const variant of router.variants) {
    if (point < variant.weight) return variant;
    point -= variant.weight;
  }
  return router.variants[router.variants.length - 1];
}

function cookieValue(req, name) {
  for (const line of req.headerAll("cookie")) {
    for (const pair of line.split(";")) {
      const eq = pair.indexOf("=");
      if (eq > 0 && pair.slice(0, eq).trim() === name) return pair.slice(eq + 1).trim();
    }
  }
  return undefined;
}

function assign(req) {
  if (router.keyHeader !== "") {
    const identity = req.header(router.keyHeader);
    if (identity) return { variant: pick(identity), remembered: false };
  }
  if (router.cookie !== "") {
    const kept = cookieValue(req, router.cookie);
    const variant = router.variants.find((v) => v.name === kept && v.weight > 0);
    if (variant) return { variant, remembered: true };
  }
  return { variant: pick(req.header("x-request-id") ?? req.clientIp()), remembered: false };
}

export const handler = {
  configure(config) {
    try {
      router = parseConfig(JSON.parse(config));
    } catch (e) {
      if (e instanceof ConfigError) throw e.payload;
      throw { key: undefined, message: String(e) };
    }
    return { request: true, response: true };
  },

  onRequest(req, ctx) {
    const { variant, remembered } = assign(req);
    req.setHeader(router.header, variant.name);
    if (variant.prefix !== "") req.setPath(variant.prefix + req.path());
    ctx.set("variant", variant.name);
    if (!remembered) ctx.set("variant-new", "1");
    return { tag: "continue" };
  },

  onResponse(req, resp, ctx) {
    const name = ctx.get("variant");
    if (name === undefined) return;
    resp.setHeader(router.header, name);
    if (router.cookie !== "" && ctx.get("variant-new") === "1") {
      resp.appendHeader(
        "set-cookie",
        `${router.cookie}=${name}; Path=/; Max-Age=${COOKIE_MAX_AGE}; HttpOnly; SameSite=Lax`,
      );
    }
  },
};
