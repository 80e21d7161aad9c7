//! The cookies a request carries (its `Cookie` headers, RFC 6265 §5.4), read one way by every
//! plugin: pairs split on `;`, names and values as the client sent them (no decoding).

use crate::Request;

/// Every `(name, value)` pair of the request's `Cookie` headers, in order. A pair without `=`
/// is no cookie and is left out.
pub fn pairs(req: &Request) -> Vec<(String, String)> {
    req.header_all("cookie")
        .iter()
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            Some((name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect()
}

/// The values of cookie `name`, in order: a client may send a name more than once, and a
/// plugin that takes a credential from it should see every copy.
pub fn values(req: &Request, name: &str) -> Vec<String> {
    pairs(req)
        .into_iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v)
        .collect()
}
