//! Macro strings (`%{tx.anomaly_score}`, `%{MATCHED_VAR_NAME}`, `%{rule.id}`): split once at
//! load time into literal text and variable references, expanded per request.

use crate::variable::Collection;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Text(String),
    /// `%{COLLECTION}` or `%{COLLECTION.key}`; the key is lower-cased.
    Var(Collection, Option<String>),
}

/// A string that may contain macros.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MacroString {
    parts: Vec<Part>,
}

impl MacroString {
    pub fn parse(text: &str) -> Result<MacroString, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut literal = String::new();
        while let Some(start) = rest.find("%{") {
            literal.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(format!("unterminated macro in `{text}`"));
            };
            let inner = &after[..end];
            let (name, key) = match inner.split_once('.') {
                Some((n, k)) => (n, Some(k.to_ascii_lowercase())),
                None => (inner, None),
            };
            let collection = Collection::from_name(name)
                .ok_or_else(|| format!("unknown variable `{name}` in macro `%{{{inner}}}`"))?;
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(Part::Var(collection, key));
            rest = &after[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(MacroString { parts })
    }

    /// The text when the string has no macros.
    pub fn constant(&self) -> Option<String> {
        match self.parts.as_slice() {
            [] => Some(String::new()),
            [Part::Text(t)] => Some(t.clone()),
            _ => None,
        }
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Expands with `resolve` giving the first value of a variable (empty when unset).
    pub fn expand(&self, resolve: &mut dyn FnMut(Collection, Option<&str>) -> Vec<u8>) -> Vec<u8> {
        let mut out = Vec::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.extend_from_slice(t.as_bytes()),
                Part::Var(c, k) => out.extend_from_slice(&resolve(*c, k.as_deref())),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macros_split_into_text_and_variables() {
        let m = MacroString::parse("score %{TX.Anomaly_Score} at %{MATCHED_VAR_NAME}!").unwrap();
        assert_eq!(
            m.parts(),
            [
                Part::Text("score ".into()),
                Part::Var(Collection::Tx, Some("anomaly_score".into())),
                Part::Text(" at ".into()),
                Part::Var(Collection::MatchedVarName, None),
                Part::Text("!".into()),
            ]
        );
        let out = m.expand(&mut |c, k| match (c, k) {
            (Collection::Tx, Some("anomaly_score")) => b"5".to_vec(),
            _ => b"ARGS:q".to_vec(),
        });
        assert_eq!(out, b"score 5 at ARGS:q!");
    }

    #[test]
    fn plain_text_is_constant_and_bad_macros_are_errors() {
        assert_eq!(
            MacroString::parse("abc").unwrap().constant().as_deref(),
            Some("abc")
        );
        assert!(MacroString::parse("%{nope.x}").is_err());
        assert!(MacroString::parse("%{tx.x").is_err());
    }
}
