//! Configs that are valid but probably not what their author meant, reported by
//! `wasmgate check` without failing it.
//!
//! Each lint is one function over the parsed file that appends its findings; [`warnings`]
//! runs them all. A finding is a [`Problem`], so it names file, line and column like an error.

use super::{ConfigFile, Problem};

/// Every warning about `file`, in lint order, then file order.
pub fn warnings(file: &ConfigFile) -> Vec<Problem> {
    let mut found = Vec::new();
    jwt_without_issuer_or_audience(file, &mut found);
    found
}

/// A `jwt-auth` that checks neither `iss` nor `aud` accepts a token minted for any purpose by
/// anyone holding one of its keys: with a shared JWKS (one identity provider, many tenants or
/// applications) a token meant for another application passes.
fn jwt_without_issuer_or_audience(file: &ConfigFile, found: &mut Vec<Problem>) {
    for route in &file.raw.routes {
        let route = route.get_ref();
        for entry in &route.plugins {
            let name = entry.get_ref().plugin.get_ref();
            let is_jwt = file
                .raw
                .plugins
                .get(name)
                .is_some_and(|p| p.get_ref().module.get_ref() == "builtin:jwt-auth");
            if !is_jwt {
                continue;
            }
            let config = entry.get_ref().config.as_ref().map(|c| c.get_ref());
            let names_some = |key: &str| {
                config
                    .and_then(|c| c.get(key))
                    .and_then(toml::Value::as_array)
                    .is_some_and(|list| !list.is_empty())
            };
            if names_some("issuers") || names_some("audiences") {
                continue;
            }
            found.push(file.problem(
                entry.span(),
                format!(
                    "warning: route `{}`: plugin `{name}` (builtin:jwt-auth) sets neither `issuers` nor `audiences`: \
                     a token from any issuer that holds a trusted key passes",
                    route.name.get_ref()
                ),
            ));
        }
    }
}
