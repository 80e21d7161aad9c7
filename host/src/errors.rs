//! Error text for logs and problem details. A leaf module, used wherever a transport or
//! library error is reported.

/// An error and its causes on one line, `outer: inner: root`, for logs.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}
