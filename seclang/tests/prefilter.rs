//! Literal prefilters skip rules that cannot match; they must never skip one that can.

#![allow(clippy::unwrap_used)]

use wasmgate_seclang::{Builder, Request};

/// A phase-1 rule reads the arguments' stores before the body is parsed; a phase-2 rule on
/// the same transformation chain must still see the body's arguments.
#[test]
fn a_phase_two_rule_sees_body_arguments_a_phase_one_rule_looked_for_earlier() {
    let no_files = |p: &str| Err(format!("{p}: no files"));
    let mut b = Builder::new(&no_files);
    b.add(
        "rules.conf",
        "SecRuleEngine On\nSecRequestBodyAccess On\n\
         SecRule ARGS \"@rx foo\" \"id:1,phase:1,pass,t:none\"\n\
         SecRule REQUEST_BODY \"@rx foo\" \"id:3,phase:1,pass,t:none\"\n\
         SecRule ARGS_POST \"@rx bar\" \"id:2,phase:2,deny,t:none\"\n\
         SecRule REQUEST_BODY \"@rx baz\" \"id:4,phase:2,deny,status:418,t:none\"\n",
    )
    .unwrap();
    let set = b.build().unwrap();
    for body in [&b"a=bar"[..], b"a=baz"] {
        let req = Request {
            method: b"POST",
            target: b"/form?q=1",
            protocol: b"HTTP/1.1",
            headers: vec![
                (b"Host", b"localhost"),
                (b"Content-Type", b"application/x-www-form-urlencoded"),
            ],
            body: Some(body),
            ..Default::default()
        };
        let out = set.evaluate(&req);
        let i = out.intervention.expect("denied in phase 2");
        assert_eq!(i.rule, if body == b"a=bar" { 2 } else { 4 });
    }
}
