//! What the plugin's TOML config becomes in SecLang: the setup that runs before the rule
//! files (engine mode, body handling, paranoia, threshold, `tx` tuning) and the exclusions.

use serde::Deserialize;

pub struct Preamble<'a> {
    pub detect: bool,
    pub paranoia: u8,
    pub threshold: u32,
    pub max_body: u64,
    pub api_defaults: bool,
    pub tx: &'a [(String, String)],
}

/// The setup rules, ids 200000–200003 as in ModSecurity's recommended configuration and
/// 900000–900999 as CRS reserves for its setup.
pub fn preamble(p: &Preamble<'_>) -> String {
    let engine = if p.detect { "DetectionOnly" } else { "On" };
    let mut out = format!(
        "SecRuleEngine {engine}\n\
         SecRequestBodyAccess On\n\
         SecRequestBodyLimit {max}\n\
         SecRequestBodyNoFilesLimit {max}\n\
         SecRequestBodyJsonDepthLimit 256\n\
         SecArgumentsLimit 1000\n",
        max = p.max_body
    );
    if p.api_defaults {
        // JSON and XML bodies are parsed into arguments (so rules see `ARGS:json.user.bio`,
        // not one opaque body), including `+json` media types such as application/ld+json
        // and application/problem+json; a body that does not parse as its type is refused.
        out.push_str(
            "SecRule REQUEST_HEADERS:Content-Type \"@rx ^(?:application(?:/soap\\+|/)|text/)xml\" \
             \"id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML\"\n\
             SecRule REQUEST_HEADERS:Content-Type \"@rx ^application/(?:[a-z0-9.-]+\\+)?json\" \
             \"id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON\"\n\
             SecRule REQBODY_ERROR \"!@eq 0\" \
             \"id:200002,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body'\"\n\
             SecRule MULTIPART_STRICT_ERROR \"!@eq 0\" \
             \"id:200003,phase:2,t:none,log,deny,status:400,msg:'Multipart request body failed strict validation'\"\n",
        );
        // CRS's HTTP policy is written for web sites; APIs also use PUT, PATCH and DELETE and
        // send plain text, GraphQL, NDJSON and the structured `+json` types.
        out.push_str(
            "SecAction \"id:900200,phase:1,pass,nolog,t:none,\
             setvar:'tx.allowed_methods=GET HEAD POST PUT PATCH DELETE OPTIONS'\"\n\
             SecAction \"id:900220,phase:1,pass,nolog,t:none,\
             setvar:'tx.allowed_request_content_type=|application/x-www-form-urlencoded| \
             |multipart/form-data| |multipart/related| |text/xml| |application/xml| \
             |application/soap+xml| |application/json| |application/cloudevents+json| \
             |application/cloudevents-batch+json| |application/merge-patch+json| \
             |application/json-patch+json| |application/problem+json| |application/ld+json| \
             |application/vnd.api+json| |application/graphql| |application/x-ndjson| \
             |application/octet-stream| |text/plain| |text/csv|'\"\n",
        );
        // A GraphQL document is code in a known place: the `query` of a POST to a GraphQL
        // endpoint. It is exempt from the command- and SQL-injection rules there (as CRS's
        // application exclusion packages exempt known fields); its variables are not.
        out.push_str(
            "SecRule REQUEST_FILENAME \"@rx /graphql/?$\" \"id:900300,phase:1,pass,nolog,t:none,t:lowercase,\
             ctl:ruleRemoveTargetByTag=attack-rce;ARGS:json.query,\
             ctl:ruleRemoveTargetByTag=attack-sqli;ARGS:json.query,\
             ctl:ruleRemoveTargetByTag=attack-rce;ARGS:query,\
             ctl:ruleRemoveTargetByTag=attack-sqli;ARGS:query\"\n",
        );
    }
    out.push_str(&format!(
        "SecAction \"id:900000,phase:1,pass,nolog,t:none,\
         setvar:tx.paranoia_level={pl},setvar:tx.blocking_paranoia_level={pl}\"\n\
         SecAction \"id:900110,phase:1,pass,nolog,t:none,\
         setvar:tx.inbound_anomaly_score_threshold={t},setvar:tx.outbound_anomaly_score_threshold=4\"\n",
        pl = p.paranoia,
        t = p.threshold
    ));
    for (i, (name, value)) in p.tx.iter().enumerate() {
        out.push_str(&format!(
            "SecAction \"id:{},phase:1,pass,nolog,t:none,setvar:'tx.{name}={}'\"\n",
            900900 + i,
            value.replace('\'', "\\'")
        ));
    }
    out
}

/// `tx` keys are variable names: letters, digits, `_`, `-`, `.`.
pub fn check_tx_name(name: &str) -> Result<(), String> {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        Ok(())
    } else {
        Err("a TX variable name is letters, digits, `_`, `-` and `.`".to_owned())
    }
}

/// One `exclude` entry: a rule (by `id`, or a range `"942100-942199"`) or every rule with a
/// `tag`, for one `target` or altogether.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exclusion {
    #[serde(default)]
    id: Option<Id>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    target: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Id {
    One(u32),
    Range(String),
}

impl Exclusion {
    /// The SecLang directive this exclusion means (CRS's own exclusion mechanism).
    pub fn to_seclang(&self) -> Result<String, String> {
        let quote = |s: &str| s.replace('"', "\\\"");
        if let Some(t) = &self.target
            && (t.is_empty() || t.contains(['|', '"', '\n']))
        {
            return Err(format!(
                "`{t}` is not one target such as ARGS:q or REQUEST_COOKIES:/^_ga/"
            ));
        }
        match (&self.id, &self.tag, &self.target) {
            (Some(_), Some(_), _) => Err("name an `id` or a `tag`, not both".to_owned()),
            (None, None, _) => Err("name an `id` or a `tag`".to_owned()),
            (Some(id), None, target) => {
                let id = match id {
                    Id::One(n) => n.to_string(),
                    Id::Range(r) => {
                        if !r.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
                            return Err(format!(
                                "`{r}` is not a rule id or a range like 942100-942199"
                            ));
                        }
                        r.clone()
                    }
                };
                Ok(match target {
                    Some(t) => format!("SecRuleUpdateTargetById {id} \"!{}\"\n", quote(t)),
                    None => format!("SecRuleRemoveById {id}\n"),
                })
            }
            (None, Some(tag), target) => Ok(match target {
                Some(t) => format!(
                    "SecRuleUpdateTargetByTag \"{}\" \"!{}\"\n",
                    quote(tag),
                    quote(t)
                ),
                None => format!("SecRuleRemoveByTag \"{}\"\n", quote(tag)),
            }),
        }
    }
}
