// {{name}}: a wasmgate plugin.
//
// Adds `x-greeting: hello` to every request on its way upstream and `x-plugin: {{name}}` to
// every response. It takes no config (`{}`).

#include <string.h>

#include "gen/{{name_snake}}.h"

typedef {{name_snake}}_string_t string_t;

bool exports_wasmgate_plugin_handler_configure(string_t *config,
                                               exports_wasmgate_plugin_handler_hooks_t *ret,
                                               exports_wasmgate_plugin_handler_config_error_t *err) {
  bool empty = config->len == 2 && memcmp(config->ptr, "{}", 2) == 0;
  {{name_snake}}_string_free(config);
  if (!empty) {
    err->key.is_some = false;
    {{name_snake}}_string_dup(&err->message, "this plugin takes no config");
    return false;
  }
  *ret = WASMGATE_PLUGIN_TYPES_HOOKS_REQUEST | WASMGATE_PLUGIN_TYPES_HOOKS_RESPONSE;
  return true;
}

void exports_wasmgate_plugin_handler_on_request(exports_wasmgate_plugin_handler_borrow_request_t req,
                                                exports_wasmgate_plugin_handler_borrow_context_t ctx,
                                                exports_wasmgate_plugin_handler_action_t *ret) {
  string_t name, value;
  wasmgate_plugin_types_edit_error_t error;
  {{name_snake}}_string_set(&name, "x-greeting");
  {{name_snake}}_string_set(&value, "hello");
  wasmgate_plugin_types_method_request_set_header(req, &name, &value, &error);
  ret->tag = WASMGATE_PLUGIN_TYPES_ACTION_CONTINUE;
  // Borrowed handles must be released before returning: the canonical ABI traps otherwise.
  wasmgate_plugin_types_request_drop_borrow(req);
  wasmgate_plugin_types_context_drop_borrow(ctx);
}

void exports_wasmgate_plugin_handler_on_response(exports_wasmgate_plugin_handler_borrow_request_t req,
                                                 exports_wasmgate_plugin_handler_borrow_response_t resp,
                                                 exports_wasmgate_plugin_handler_borrow_context_t ctx) {
  string_t name, value;
  wasmgate_plugin_types_edit_error_t error;
  {{name_snake}}_string_set(&name, "x-plugin");
  {{name_snake}}_string_set(&value, "{{name}}");
  wasmgate_plugin_types_method_response_set_header(resp, &name, &value, &error);
  wasmgate_plugin_types_request_drop_borrow(req);
  wasmgate_plugin_types_response_drop_borrow(resp);
  wasmgate_plugin_types_context_drop_borrow(ctx);
}
