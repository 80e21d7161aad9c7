//! Parameters of a request's query string, read one way by every plugin: pairs split on `&`,
//! names compared and values returned as the client sent them (not percent-decoded, so what a
//! plugin matches is what the upstream receives).

use crate::Request;

/// The raw values of query parameter `name`, in order (a parameter may repeat). A pair
/// without `=` has no value and is left out.
pub fn raw_values(req: &Request, name: &str) -> Vec<String> {
    let Some(query) = req.query() else {
        return Vec::new();
    };
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
        .collect()
}
