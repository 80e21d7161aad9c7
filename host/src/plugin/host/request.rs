//! The `request` resource: the method, target and headers of the request being handled, read and edited in the request phase.

use super::*;

impl types::HostRequest for PluginState {
    fn method(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        Ok(self.exchange()?.request.method.as_str().to_owned())
    }

    fn scheme(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        let tls = self.exchange()?.tls;
        Ok(if tls { "https" } else { "http" }.to_owned())
    }

    fn authority(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<Option<String>> {
        let req = &self.exchange()?.request;
        Ok(match req.uri.authority() {
            Some(authority) => Some(authority.as_str().to_owned()),
            None => fields::first(&req.headers, "host"),
        })
    }

    fn path(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        Ok(self.exchange()?.request.uri.path().to_owned())
    }

    fn set_path(
        &mut self,
        _: Resource<RequestHandle>,
        path: String,
    ) -> wasmtime::Result<Result<(), EditError>> {
        let uri = &mut self.exchange()?.request.uri;
        // The upstream only ever sees canonical paths, whoever wrote them: a rewrite built from
        // client input cannot smuggle a dot segment, an encoded slash or a query past the route.
        let rules = crate::ingress::PathRules {
            merge_slashes: true,
            allow_path_params: true,
        };
        let Ok(path) = crate::ingress::path::canonical_rewrite(&path, rules) else {
            return Ok(Err(EditError::InvalidValue));
        };
        let query = uri.query();
        let pq = match query {
            Some(q) => format!("{path}?{q}"),
            None => path.into_owned(),
        };
        Ok(replace_path_and_query(uri, &pq))
    }

    fn query(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<Option<String>> {
        Ok(self.exchange()?.request.uri.query().map(str::to_owned))
    }

    fn set_query(
        &mut self,
        _: Resource<RequestHandle>,
        query: Option<String>,
    ) -> wasmtime::Result<Result<(), EditError>> {
        let uri = &mut self.exchange()?.request.uri;
        let pq = match query {
            Some(q) => format!("{}?{q}", uri.path()),
            None => uri.path().to_owned(),
        };
        Ok(replace_path_and_query(uri, &pq))
    }

    fn client_ip(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        Ok(self.exchange()?.client_ip.to_string())
    }

    fn route(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<String> {
        Ok(self.exchange()?.route.to_string())
    }

    fn header(
        &mut self,
        _: Resource<RequestHandle>,
        name: String,
    ) -> wasmtime::Result<Option<String>> {
        Ok(fields::first(&self.exchange()?.request.headers, &name))
    }

    fn header_all(
        &mut self,
        _: Resource<RequestHandle>,
        name: String,
    ) -> wasmtime::Result<Vec<String>> {
        Ok(fields::all(&self.exchange()?.request.headers, &name))
    }

    fn header_names(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<Vec<String>> {
        Ok(fields::names(&self.exchange()?.request.headers))
    }

    fn set_header(
        &mut self,
        _: Resource<RequestHandle>,
        name: String,
        value: String,
    ) -> wasmtime::Result<Result<(), EditError>> {
        Ok(fields::set(
            &mut self.exchange()?.request.headers,
            &name,
            &value,
            false,
        ))
    }

    fn append_header(
        &mut self,
        _: Resource<RequestHandle>,
        name: String,
        value: String,
    ) -> wasmtime::Result<Result<(), EditError>> {
        Ok(fields::set(
            &mut self.exchange()?.request.headers,
            &name,
            &value,
            true,
        ))
    }

    fn remove_header(
        &mut self,
        _: Resource<RequestHandle>,
        name: String,
    ) -> wasmtime::Result<Result<(), EditError>> {
        Ok(fields::remove(&mut self.exchange()?.request.headers, &name))
    }

    fn body(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<Option<Vec<u8>>> {
        // Only for a plugin that asked for request bodies: the others never see one.
        if self.body_limits.request.is_none() {
            return Ok(None);
        }
        Ok(self.exchange()?.request_body.as_deref().map(<[u8]>::to_vec))
    }

    fn set_body(&mut self, _: Resource<RequestHandle>, body: Vec<u8>) -> wasmtime::Result<()> {
        if self.body_limits.request.is_none() {
            return Err(undeclared("request"));
        }
        let exchange = self.exchange()?;
        // The new body is what the plugin wrote, not in the client's coding.
        exchange
            .request
            .headers
            .remove(http::header::CONTENT_ENCODING);
        exchange.request_body = Some(body.into());
        Ok(())
    }

    fn drop(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<()> {
        Ok(())
    }
}

fn replace_path_and_query(uri: &mut http::Uri, path_and_query: &str) -> Result<(), EditError> {
    let pq =
        http::uri::PathAndQuery::try_from(path_and_query).map_err(|_| EditError::InvalidValue)?;
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(pq);
    // Scheme and authority are unchanged and were valid together, so this cannot fail; keep
    // the original URI's shape if it ever did.
    *uri = http::Uri::from_parts(parts).map_err(|_| EditError::InvalidValue)?;
    Ok(())
}
