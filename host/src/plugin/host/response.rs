//! The `response` resource: the status and headers of the upstream's (or a plugin's) response, in the response phase.

use super::*;

impl types::HostResponse for PluginState {
    fn status(&mut self, _: Resource<ResponseHandle>) -> wasmtime::Result<u16> {
        Ok(self.response_head()?.status.as_u16())
    }

    fn set_status(
        &mut self,
        _: Resource<ResponseHandle>,
        status: u16,
    ) -> wasmtime::Result<Result<(), EditError>> {
        let head = self.response_head()?;
        Ok(match http::StatusCode::from_u16(status) {
            Ok(status) => {
                head.status = status;
                Ok(())
            }
            Err(_) => Err(EditError::InvalidValue),
        })
    }

    fn header(
        &mut self,
        _: Resource<ResponseHandle>,
        name: String,
    ) -> wasmtime::Result<Option<String>> {
        Ok(fields::first(&self.response_head()?.headers, &name))
    }

    fn header_all(
        &mut self,
        _: Resource<ResponseHandle>,
        name: String,
    ) -> wasmtime::Result<Vec<String>> {
        Ok(fields::all(&self.response_head()?.headers, &name))
    }

    fn header_names(&mut self, _: Resource<ResponseHandle>) -> wasmtime::Result<Vec<String>> {
        Ok(fields::names(&self.response_head()?.headers))
    }

    fn set_header(
        &mut self,
        _: Resource<ResponseHandle>,
        name: String,
        value: String,
    ) -> wasmtime::Result<Result<(), EditError>> {
        Ok(fields::set(
            &mut self.response_head()?.headers,
            &name,
            &value,
            false,
        ))
    }

    fn append_header(
        &mut self,
        _: Resource<ResponseHandle>,
        name: String,
        value: String,
    ) -> wasmtime::Result<Result<(), EditError>> {
        Ok(fields::set(
            &mut self.response_head()?.headers,
            &name,
            &value,
            true,
        ))
    }

    fn remove_header(
        &mut self,
        _: Resource<ResponseHandle>,
        name: String,
    ) -> wasmtime::Result<Result<(), EditError>> {
        Ok(fields::remove(&mut self.response_head()?.headers, &name))
    }

    fn body(&mut self, _: Resource<ResponseHandle>) -> wasmtime::Result<Option<Vec<u8>>> {
        self.response_head()?;
        if self.body_limits.response.is_none() {
            return Ok(None);
        }
        Ok(self
            .exchange()?
            .response_body
            .as_deref()
            .map(<[u8]>::to_vec))
    }

    fn set_body(&mut self, _: Resource<ResponseHandle>, body: Vec<u8>) -> wasmtime::Result<()> {
        if self.body_limits.response.is_none() {
            return Err(undeclared("response"));
        }
        self.response_head()?
            .headers
            .remove(http::header::CONTENT_ENCODING);
        self.exchange()?.response_body = Some(body.into());
        Ok(())
    }

    fn drop(&mut self, _: Resource<ResponseHandle>) -> wasmtime::Result<()> {
        Ok(())
    }
}
