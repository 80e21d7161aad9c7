// ip-allowlist: admits or refuses a request by the client's IP address.
//
//   { use = "ip-allowlist", config = { allow = ["10.0.0.0/8", "2001:db8::/32"], deny = ["10.6.6.6"] } }
//
//   allow  addresses or CIDR ranges (IPv4 and IPv6); when given, every other client is refused
//   deny   addresses or ranges refused even when `allow` covers them
//
// At least one of the two is required. A refused client gets 403 with an RFC 9457 problem
// document. IPv4 clients connecting over IPv6 (`::ffff:a.b.c.d`) match IPv4 ranges.
//
// Built with clang, wasi-libc and `wit-bindgen c`: see build.sh.

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "gen/ip_allowlist.h"

// An address range, every address held as 16 bytes (IPv4 as IPv4-mapped IPv6).
typedef struct {
  uint8_t addr[16];
  unsigned prefix;
} range_t;

typedef struct {
  range_t *items;
  size_t len;
} range_list_t;

static range_list_t allow_list;
static range_list_t deny_list;
static bool configured;

// ---- messages (no stdio: it would pull WASI file imports into the module) --------------------

typedef struct {
  char *buf;
  size_t cap, len;
} text_t;

static void add(text_t *t, const char *s) {
  while (*s && t->len + 1 < t->cap) t->buf[t->len++] = *s++;
  t->buf[t->len] = '\0';
}

static void add_uint(text_t *t, unsigned long n) {
  char digits[24];
  size_t i = sizeof digits - 1;
  digits[i] = '\0';
  do digits[--i] = (char)('0' + n % 10); while ((n /= 10) && i > 0);
  add(t, digits + i);
}

// ---- addresses ----------------------------------------------------------------------------

// Parses an IPv4 or IPv6 address into 16 bytes; `*is_v4` tells which it was.
static bool parse_addr(const char *text, uint8_t out[16], bool *is_v4) {
  struct in_addr v4;
  if (inet_pton(AF_INET, text, &v4) == 1) {
    memset(out, 0, 10);
    out[10] = 0xff;
    out[11] = 0xff;
    memcpy(out + 12, &v4, 4);
    *is_v4 = true;
    return true;
  }
  *is_v4 = false;
  return inet_pton(AF_INET6, text, out) == 1;
}

static bool in_range(const range_t *range, const uint8_t addr[16]) {
  unsigned full = range->prefix / 8, rest = range->prefix % 8;
  if (memcmp(range->addr, addr, full) != 0) return false;
  if (rest == 0) return true;
  uint8_t mask = (uint8_t)(0xff << (8 - rest));
  return (range->addr[full] & mask) == (addr[full] & mask);
}

static bool any_in(const range_list_t *list, const uint8_t addr[16]) {
  for (size_t i = 0; i < list->len; i++) {
    if (in_range(&list->items[i], addr)) return true;
  }
  return false;
}

// Parses `a.b.c.d`, `a.b.c.d/n`, `v6` or `v6/n`; on failure writes why into `why`.
static bool parse_range(const char *text, range_t *out, text_t *why) {
  char addr_text[64];
  const char *slash = strchr(text, '/');
  size_t addr_len = slash ? (size_t)(slash - text) : strlen(text);
  bool is_v4 = false;
  if (addr_len > 0 && addr_len < sizeof addr_text) {
    memcpy(addr_text, text, addr_len);
    addr_text[addr_len] = '\0';
  }
  if (addr_len == 0 || addr_len >= sizeof addr_text || !parse_addr(addr_text, out->addr, &is_v4)) {
    add(why, "`");
    add(why, text);
    add(why, "` is not an IP address or CIDR range");
    return false;
  }
  unsigned max = is_v4 ? 32 : 128, prefix = max;
  if (slash) {
    char *end;
    unsigned long n = strtoul(slash + 1, &end, 10);
    if (slash[1] < '0' || slash[1] > '9' || *end != '\0' || n > max) {
      add(why, "`");
      add(why, text);
      add(why, "`: the prefix length must be 0 to ");
      add_uint(why, max);
      return false;
    }
    prefix = (unsigned)n;
  }
  out->prefix = is_v4 ? prefix + 96 : prefix;
  // Bits beyond the prefix must be zero: `10.0.0.1/8` is more likely a typo than a range.
  range_t base = *out;
  for (unsigned bit = out->prefix; bit < 128; bit++) base.addr[bit / 8] &= (uint8_t)~(0x80 >> (bit % 8));
  if (memcmp(base.addr, out->addr, 16) != 0) {
    add(why, "`");
    add(why, text);
    add(why, "` has bits set beyond its /");
    add_uint(why, prefix);
    add(why, " prefix");
    return false;
  }
  return true;
}

// ---- config: {"allow": [string...], "deny": [string...]} --------------------------------------

typedef struct {
  const char *at;
  const char *end;
} cursor_t;

static void skip_ws(cursor_t *c) {
  while (c->at < c->end && (*c->at == ' ' || *c->at == '\n' || *c->at == '\r' || *c->at == '\t')) c->at++;
}

static bool eat(cursor_t *c, char ch) {
  skip_ws(c);
  if (c->at < c->end && *c->at == ch) {
    c->at++;
    return true;
  }
  return false;
}

// Reads a JSON string into `out` (NUL-terminated). Escapes other than \" and \\ are refused:
// addresses and key names never need them.
static bool read_string(cursor_t *c, char *out, size_t out_len) {
  if (!eat(c, '"')) return false;
  size_t n = 0;
  while (c->at < c->end && *c->at != '"') {
    char ch = *c->at++;
    if (ch == '\\') {
      if (c->at >= c->end || (*c->at != '"' && *c->at != '\\')) return false;
      ch = *c->at++;
    }
    if (n + 1 >= out_len) return false;
    out[n++] = ch;
  }
  out[n] = '\0';
  return eat(c, '"');
}

static bool fail(exports_wasmgate_plugin_handler_config_error_t *err, const char *key, const char *message) {
  err->key.is_some = key != NULL;
  if (key) ip_allowlist_string_dup(&err->key.val, key);
  ip_allowlist_string_dup(&err->message, message);
  return false;
}

static bool read_list(cursor_t *c, const char *name, range_list_t *list,
                      exports_wasmgate_plugin_handler_config_error_t *err) {
  char key_buf[64], value[128], why_buf[256];
  if (!eat(c, '[')) return fail(err, name, "expected a list of addresses or CIDR ranges");
  if (eat(c, ']')) return true;
  do {
    text_t key = {key_buf, sizeof key_buf, 0}, why = {why_buf, sizeof why_buf, 0};
    add(&key, name);
    add(&key, "[");
    add_uint(&key, list->len);
    add(&key, "]");
    if (!read_string(c, value, sizeof value)) return fail(err, key_buf, "expected an address or CIDR range as a string");
    range_t *grown = realloc(list->items, (list->len + 1) * sizeof *grown);
    if (!grown) return fail(err, key_buf, "out of memory");
    list->items = grown;
    if (!parse_range(value, &list->items[list->len], &why)) return fail(err, key_buf, why_buf);
    list->len++;
  } while (eat(c, ','));
  if (!eat(c, ']')) return fail(err, name, "expected `,` or `]` in the list");
  return true;
}

bool exports_wasmgate_plugin_handler_configure(ip_allowlist_string_t *config,
                                               exports_wasmgate_plugin_handler_hooks_t *ret,
                                               exports_wasmgate_plugin_handler_config_error_t *err) {
  cursor_t c = {(const char *)config->ptr, (const char *)config->ptr + config->len};
  bool ok = true;
  char key[64];
  if (!eat(&c, '{')) {
    ok = fail(err, NULL, "the config must be a table");
  } else if (!eat(&c, '}')) {
    do {
      if (!read_string(&c, key, sizeof key) || !eat(&c, ':')) {
        ok = fail(err, NULL, "malformed config");
      } else if (strcmp(key, "allow") == 0) {
        ok = read_list(&c, "allow", &allow_list, err);
      } else if (strcmp(key, "deny") == 0) {
        ok = read_list(&c, "deny", &deny_list, err);
      } else {
        ok = fail(err, key, "unknown key; expected `allow` or `deny`");
      }
    } while (ok && eat(&c, ','));
    if (ok && !eat(&c, '}')) ok = fail(err, NULL, "malformed config");
  }
  if (ok && allow_list.len == 0 && deny_list.len == 0) {
    ok = fail(err, NULL, "nothing to check: give `allow` and/or `deny` ranges");
  }
  ip_allowlist_string_free(config);
  if (!ok) return false;
  configured = true;
  *ret = WASMGATE_PLUGIN_TYPES_HOOKS_REQUEST;
  return true;
}

// ---- requests -----------------------------------------------------------------------------

static const char FORBIDDEN[] =
    "{\"type\":\"about:blank\",\"title\":\"Forbidden\",\"status\":403,"
    "\"detail\":\"requests from this address are not allowed\"}";

static void refuse(exports_wasmgate_plugin_handler_action_t *ret) {
  // The reply's memory is handed to the host, which frees it after the call.
  ip_allowlist_tuple2_string_string_t *headers = malloc(sizeof *headers);
  uint8_t *body = malloc(sizeof FORBIDDEN - 1);
  if (!headers || !body) abort();
  ip_allowlist_string_dup(&headers->f0, "content-type");
  ip_allowlist_string_dup(&headers->f1, "application/problem+json");
  memcpy(body, FORBIDDEN, sizeof FORBIDDEN - 1);
  ret->tag = WASMGATE_PLUGIN_TYPES_ACTION_RESPOND;
  ret->val.respond.status = 403;
  ret->val.respond.headers = (ip_allowlist_list_tuple2_string_string_t){headers, 1};
  ret->val.respond.body = (ip_allowlist_list_u8_t){body, sizeof FORBIDDEN - 1};
}

static bool admitted(const char *client) {
  uint8_t addr[16];
  bool is_v4;
  if (!parse_addr(client, addr, &is_v4)) return false;
  if (any_in(&deny_list, addr)) return false;
  return allow_list.len == 0 || any_in(&allow_list, addr);
}

void exports_wasmgate_plugin_handler_on_request(exports_wasmgate_plugin_handler_borrow_request_t req,
                                                exports_wasmgate_plugin_handler_borrow_context_t ctx,
                                                exports_wasmgate_plugin_handler_action_t *ret) {
  ip_allowlist_string_t ip;
  wasmgate_plugin_types_method_request_client_ip(req, &ip);
  char client[64] = "";
  if (ip.len < sizeof client) memcpy(client, ip.ptr, ip.len);
  ip_allowlist_string_free(&ip);

  if (configured && admitted(client)) {
    ret->tag = WASMGATE_PLUGIN_TYPES_ACTION_CONTINUE;
  } else {
    refuse(ret);
  }
  // Borrowed handles must be released before returning: the canonical ABI traps otherwise.
  wasmgate_plugin_types_request_drop_borrow(req);
  wasmgate_plugin_types_context_drop_borrow(ctx);
}

void exports_wasmgate_plugin_handler_on_response(exports_wasmgate_plugin_handler_borrow_request_t req,
                                                 exports_wasmgate_plugin_handler_borrow_response_t resp,
                                                 exports_wasmgate_plugin_handler_borrow_context_t ctx) {
  wasmgate_plugin_types_request_drop_borrow(req);
  wasmgate_plugin_types_response_drop_borrow(resp);
  wasmgate_plugin_types_context_drop_borrow(ctx);
}
