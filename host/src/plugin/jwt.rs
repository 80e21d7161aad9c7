//! The `jwt` capability: token verification in native code with jsonwebtoken.
//!
//! A key's type decides which algorithms it verifies (an HMAC secret only HS*, an RSA key only
//! RS*/PS*, and so on), whatever the token's header claims: an RSA public key can never be used
//! as an HMAC secret, and `alg: none` does not parse. Parsed keys are shared by content across
//! all instances, so a pool of instances configured with one JWKS holds one copy of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};
use wasmtime::component::Resource;

use super::bindings::wasmgate::plugin::jwt::{self as wit, Policy, VerifyError};
use super::host::PluginState;

/// The kind of a key, which fixes the algorithms it may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum KeyKind {
    Hmac,
    Rsa,
    Ec,
    Ed25519,
}

impl KeyKind {
    fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        matches!(
            (self, alg),
            (KeyKind::Hmac, HS256 | HS384 | HS512)
                | (KeyKind::Rsa, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
                | (KeyKind::Ec, ES256 | ES384)
                | (KeyKind::Ed25519, EdDSA)
        )
    }
}

struct ParsedKey {
    kind: KeyKind,
    decoding: DecodingKey,
}

struct Key {
    kid: Option<String>,
    parsed: Arc<ParsedKey>,
}

/// The host side of a `key-set` resource.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

/// Parsed keys by content, shared by every instance while any holds them.
fn shared(
    kind: KeyKind,
    material: &[u8],
    parse: impl FnOnce() -> Result<DecodingKey, String>,
) -> Result<Arc<ParsedKey>, String> {
    static CACHE: OnceLock<Mutex<HashMap<[u8; 32], Weak<ParsedKey>>>> = OnceLock::new();
    let mut digest = Sha256::new();
    digest.update([kind as u8]);
    digest.update(material);
    let id: [u8; 32] = digest.finalize().into();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(key) = cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&id)
        .and_then(Weak::upgrade)
    {
        return Ok(key);
    }
    let key = Arc::new(ParsedKey {
        kind,
        decoding: parse()?,
    });
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    cache.retain(|_, weak| weak.strong_count() > 0);
    cache.insert(id, Arc::downgrade(&key));
    Ok(key)
}

fn parse_pem(pem: &str) -> Result<Arc<ParsedKey>, String> {
    let bytes = pem.as_bytes();
    type Parse = fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>;
    let attempts: [(KeyKind, Parse); 3] = [
        (KeyKind::Rsa, DecodingKey::from_rsa_pem),
        (KeyKind::Ec, DecodingKey::from_ec_pem),
        (KeyKind::Ed25519, DecodingKey::from_ed_pem),
    ];
    for (kind, parse) in attempts {
        if let Ok(key) = parse(bytes) {
            return shared(kind, bytes, || Ok(key));
        }
    }
    Err("not a PEM RSA, EC (P-256/P-384) or Ed25519 public key or certificate".into())
}

fn algorithm(alg: wit::Algorithm) -> Algorithm {
    use wit::Algorithm as A;
    match alg {
        A::Hs256 => Algorithm::HS256,
        A::Hs384 => Algorithm::HS384,
        A::Hs512 => Algorithm::HS512,
        A::Rs256 => Algorithm::RS256,
        A::Rs384 => Algorithm::RS384,
        A::Rs512 => Algorithm::RS512,
        A::Ps256 => Algorithm::PS256,
        A::Ps384 => Algorithm::PS384,
        A::Ps512 => Algorithm::PS512,
        A::Es256 => Algorithm::ES256,
        A::Es384 => Algorithm::ES384,
        A::Eddsa => Algorithm::EdDSA,
    }
}

impl KeySet {
    fn verify(&self, token: &str, policy: &Policy) -> Result<String, VerifyError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        refuse_critical_extensions(token)?;
        let alg = header.alg;
        if !policy.algorithms.iter().any(|a| algorithm(*a) == alg) {
            return Err(VerifyError::AlgorithmNotAllowed(format!("{alg:?}")));
        }
        let candidates: Vec<&Key> = self
            .keys
            .iter()
            .filter(|k| header.kid.is_none() || k.kid == header.kid)
            .filter(|k| k.parsed.kind.fits(alg))
            .collect();
        if candidates.is_empty() {
            return Err(VerifyError::UnknownKey(header.kid));
        }
        let mut validation = Validation::new(alg);
        validation.leeway = u64::from(policy.leeway_secs);
        validation.validate_nbf = true;
        // jsonwebtoken checks `iss` and `aud` only when the token has them: a policy that
        // names issuers or audiences must also make the claims required, or a token that
        // simply leaves them out would pass. Such a token gets `missing-claim("iss")` (or
        // "aud"): it names what is wrong more exactly than `wrong-issuer` would.
        let mut required = vec!["exp"];
        if !policy.issuers.is_empty() {
            validation.set_issuer(&policy.issuers);
            required.push("iss");
        }
        if policy.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&policy.audiences);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        let mut last = VerifyError::BadSignature;
        for key in candidates {
            match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
                token,
                &key.parsed.decoding,
                &validation,
            ) {
                Ok(data) => {
                    if let Some(missing) = policy
                        .required_claims
                        .iter()
                        .find(|c| !data.claims.contains_key(*c))
                    {
                        return Err(VerifyError::MissingClaim(missing.clone()));
                    }
                    return Ok(serde_json::Value::Object(data.claims).to_string());
                }
                Err(e) => {
                    last = verify_error(e);
                    // Without a `kid`, another key of the right type may still match.
                    if !matches!(last, VerifyError::BadSignature) {
                        break;
                    }
                }
            }
        }
        Err(last)
    }
}

/// Refuses a token whose protected header has `crit` (RFC 7515, section 4.1.11): it names
/// header extensions the verifier must understand and process, and this gateway implements
/// none (`b64: false` of RFC 7797, say, changes what the signature covers). jsonwebtoken
/// ignores unknown header parameters, so the header is read here, once: it is a few dozen
/// bytes, and `decode_header` has already checked it is base64url JSON.
fn refuse_critical_extensions(token: &str) -> Result<(), VerifyError> {
    use base64::Engine;
    let segment = token.split('.').next().unwrap_or_default();
    let header: serde_json::Map<String, serde_json::Value> =
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(segment)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(|| VerifyError::Malformed("the header is not base64url JSON".into()))?;
    match header.get("crit") {
        None => Ok(()),
        Some(serde_json::Value::Array(names))
            if !names.is_empty() && names.iter().all(serde_json::Value::is_string) =>
        {
            let names: Vec<&str> = names.iter().filter_map(|n| n.as_str()).collect();
            Err(VerifyError::Malformed(format!(
                "the header marks extensions critical that are not supported: {}",
                names.join(", ")
            )))
        }
        Some(_) => Err(VerifyError::Malformed(
            "the header's `crit` is not a non-empty list of names".into(),
        )),
    }
}

fn verify_error(e: jsonwebtoken::errors::Error) -> VerifyError {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => VerifyError::BadSignature,
        K::ExpiredSignature => VerifyError::Expired,
        K::ImmatureSignature => VerifyError::NotYetValid,
        K::InvalidIssuer => VerifyError::WrongIssuer,
        K::InvalidAudience => VerifyError::WrongAudience,
        K::MissingRequiredClaim(claim) => VerifyError::MissingClaim(claim.clone()),
        _ => VerifyError::Malformed(e.to_string()),
    }
}

impl wit::Host for PluginState {}

impl wit::HostKeySet for PluginState {
    fn new(&mut self) -> wasmtime::Result<Resource<KeySet>> {
        Ok(self.table.push(KeySet::default())?)
    }

    fn add_secret(
        &mut self,
        this: Resource<KeySet>,
        secret: Vec<u8>,
        kid: Option<String>,
    ) -> wasmtime::Result<Result<(), String>> {
        if secret.len() < 32 {
            return Ok(Err(format!(
                "an HMAC secret needs at least 32 bytes (256 bits), got {}",
                secret.len()
            )));
        }
        let parsed = match shared(KeyKind::Hmac, &secret, || {
            Ok(DecodingKey::from_secret(&secret))
        }) {
            Ok(parsed) => parsed,
            Err(e) => return Ok(Err(e)),
        };
        self.table.get_mut(&this)?.keys.push(Key { kid, parsed });
        Ok(Ok(()))
    }

    fn add_pem(
        &mut self,
        this: Resource<KeySet>,
        pem: String,
        kid: Option<String>,
    ) -> wasmtime::Result<Result<(), String>> {
        let parsed = match parse_pem(&pem) {
            Ok(parsed) => parsed,
            Err(e) => return Ok(Err(e)),
        };
        self.table.get_mut(&this)?.keys.push(Key { kid, parsed });
        Ok(Ok(()))
    }

    fn add_jwks(
        &mut self,
        this: Resource<KeySet>,
        jwks: String,
    ) -> wasmtime::Result<Result<u32, String>> {
        let set: JwkSet = match serde_json::from_str(&jwks) {
            Ok(set) => set,
            Err(e) => return Ok(Err(format!("not a JWKS document: {e}"))),
        };
        let mut added = Vec::new();
        for jwk in &set.keys {
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let kind = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => KeyKind::Rsa,
                AlgorithmParameters::EllipticCurve(_) => KeyKind::Ec,
                AlgorithmParameters::OctetKeyPair(_) => KeyKind::Ed25519,
                AlgorithmParameters::OctetKey(_) => KeyKind::Hmac,
            };
            let material = serde_json::to_vec(jwk).unwrap_or_default();
            match shared(kind, &material, || {
                DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())
            }) {
                Ok(parsed) => added.push(Key {
                    kid: jwk.common.key_id.clone(),
                    parsed,
                }),
                Err(e) => {
                    return Ok(Err(format!(
                        "key {:?}: {e}",
                        jwk.common.key_id.as_deref().unwrap_or("without kid")
                    )));
                }
            }
        }
        let count = u32::try_from(added.len()).unwrap_or(u32::MAX);
        self.table.get_mut(&this)?.keys.extend(added);
        Ok(Ok(count))
    }

    fn len(&mut self, this: Resource<KeySet>) -> wasmtime::Result<u32> {
        Ok(u32::try_from(self.table.get(&this)?.keys.len()).unwrap_or(u32::MAX))
    }

    fn verify(
        &mut self,
        this: Resource<KeySet>,
        token: String,
        policy: Policy,
    ) -> wasmtime::Result<Result<String, VerifyError>> {
        Ok(self.table.get(&this)?.verify(&token, &policy))
    }

    fn drop(&mut self, this: Resource<KeySet>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"a-unit-test-secret-of-32-bytes-or-more";

    fn key_set() -> KeySet {
        let parsed = shared(KeyKind::Hmac, SECRET, || {
            Ok(DecodingKey::from_secret(SECRET))
        })
        .unwrap();
        KeySet {
            keys: vec![Key { kid: None, parsed }],
        }
    }

    fn policy(issuers: &[&str], audiences: &[&str]) -> Policy {
        Policy {
            algorithms: vec![wit::Algorithm::Hs256],
            leeway_secs: 0,
            issuers: issuers.iter().map(|s| s.to_string()).collect(),
            audiences: audiences.iter().map(|s| s.to_string()).collect(),
            required_claims: Vec::new(),
        }
    }

    fn exp() -> u64 {
        jsonwebtoken::get_current_timestamp() + 600
    }

    fn sign(claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::default(),
            claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    /// A token signed over a header written by hand (jsonwebtoken's `Header` has no `crit`).
    fn sign_with_header(header: &serde_json::Value, claims: &serde_json::Value) -> String {
        use hmac::{Hmac, Mac};
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", b64(&mac.finalize().into_bytes()))
    }

    #[test]
    fn a_policy_with_issuers_refuses_a_token_without_iss() {
        let keys = key_set();
        let token = sign(&json!({ "sub": "u", "exp": exp() }));
        assert!(matches!(
            keys.verify(&token, &policy(&["https://idp.test"], &[])),
            Err(VerifyError::MissingClaim(claim)) if claim == "iss"
        ));
        // Without issuers in the policy the same token passes.
        assert!(keys.verify(&token, &policy(&[], &[])).is_ok());
        let with_iss = sign(&json!({ "sub": "u", "exp": exp(), "iss": "https://idp.test" }));
        assert!(
            keys.verify(&with_iss, &policy(&["https://idp.test"], &[]))
                .is_ok()
        );
    }

    #[test]
    fn a_policy_with_audiences_refuses_a_token_without_aud() {
        let keys = key_set();
        let token = sign(&json!({ "sub": "u", "exp": exp() }));
        assert!(matches!(
            keys.verify(&token, &policy(&[], &["api"])),
            Err(VerifyError::MissingClaim(claim)) if claim == "aud"
        ));
        let with_aud = sign(&json!({ "sub": "u", "exp": exp(), "aud": ["other", "api"] }));
        assert!(keys.verify(&with_aud, &policy(&[], &["api"])).is_ok());
    }

    #[test]
    fn a_token_marking_any_extension_critical_is_refused() {
        let keys = key_set();
        let claims = json!({ "sub": "u", "exp": exp() });
        let plain = sign_with_header(&json!({ "alg": "HS256", "typ": "JWT" }), &claims);
        assert!(
            keys.verify(&plain, &policy(&[], &[])).is_ok(),
            "hand-signed tokens verify"
        );
        let crit = sign_with_header(
            &json!({ "alg": "HS256", "b64": false, "crit": ["b64"] }),
            &claims,
        );
        match keys.verify(&crit, &policy(&[], &[])) {
            Err(VerifyError::Malformed(why)) => assert_eq!(
                why,
                "the header marks extensions critical that are not supported: b64"
            ),
            other => panic!("{other:?}"),
        }
        for bad in [json!([]), json!("b64"), json!([1])] {
            let token = sign_with_header(&json!({ "alg": "HS256", "crit": bad }), &claims);
            assert!(
                matches!(
                    keys.verify(&token, &policy(&[], &[])),
                    Err(VerifyError::Malformed(_))
                ),
                "crit = {bad}"
            );
        }
    }
}
