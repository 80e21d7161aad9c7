//! The `#[plugin]` attribute of `wasmgate-plugin-sdk`. Use it through the SDK's re-export.

use proc_macro::TokenStream;
use quote::quote;
use syn::{ImplItem, ItemImpl, parse_macro_input};

/// Exports an `impl Plugin for T` block as the component's `handler`.
///
/// The hooks the block defines (`on_request`, `on_response`) are the hooks the plugin asks the
/// host to call; hooks left to their defaults cost nothing at request time.
#[proc_macro_attribute]
pub fn plugin(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        let msg = "#[plugin] takes no arguments";
        return syn::Error::new(proc_macro2::Span::call_site(), msg)
            .to_compile_error()
            .into();
    }
    let block = parse_macro_input!(item as ItemImpl);
    let ty = &block.self_ty;
    let defines = |name: &str| {
        block
            .items
            .iter()
            .any(|item| matches!(item, ImplItem::Fn(f) if f.sig.ident == name))
    };
    let mut hooks = vec![quote!(::wasmgate_plugin_sdk::Hooks::empty())];
    if defines("on_request") {
        hooks.push(quote!(::wasmgate_plugin_sdk::Hooks::REQUEST));
    }
    if defines("on_response") {
        hooks.push(quote!(::wasmgate_plugin_sdk::Hooks::RESPONSE));
    }

    quote! {
        #block

        const _: () = {
            struct __WasmgateExport;

            impl ::wasmgate_plugin_sdk::__private::Guest for __WasmgateExport {
                fn configure(
                    config: ::std::string::String,
                ) -> ::std::result::Result<::wasmgate_plugin_sdk::Hooks, ::wasmgate_plugin_sdk::ConfigError> {
                    ::wasmgate_plugin_sdk::__private::configure::<#ty>(&config, #(#hooks)|*)
                }

                fn on_request(
                    req: ::wasmgate_plugin_sdk::__private::RequestParam<'_>,
                    ctx: ::wasmgate_plugin_sdk::__private::ContextParam<'_>,
                ) -> ::wasmgate_plugin_sdk::Action {
                    ::wasmgate_plugin_sdk::__private::on_request::<#ty>(req, ctx)
                }

                fn on_response(
                    req: ::wasmgate_plugin_sdk::__private::RequestParam<'_>,
                    resp: ::wasmgate_plugin_sdk::__private::ResponseParam<'_>,
                    ctx: ::wasmgate_plugin_sdk::__private::ContextParam<'_>,
                ) {
                    ::wasmgate_plugin_sdk::__private::on_response::<#ty>(req, resp, ctx)
                }
            }

            ::wasmgate_plugin_sdk::bindings::__export_handler!(__WasmgateExport with_types_in ::wasmgate_plugin_sdk::bindings);
        };
    }
    .into()
}
