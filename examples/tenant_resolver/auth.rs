//! The tenant resolver's authentication: bearer tokens are JWTs signed with
//! HS256, verified (signature, expiry, issuer, audience) before a single claim
//! is trusted.
//!
//! The demo is its own identity provider: [`SigningKey::generate`] draws a
//! random key at start-up, [`DemoIssuer`] signs tokens with it and
//! [`TokenVerifier`] checks them. A real service keeps only the verifier, with
//! its identity provider's key (HS256 shared secret from the secret store, or
//! RS256/ES256 public keys from the provider's JWKS) and its issuer and
//! audience.
// Shared with the tests, which use only some of it.
#![allow(dead_code)]

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretSlice};
use serde::{Deserialize, Serialize};

/// The issuer (`iss`) the demo's tokens carry and the verifier requires.
pub const DEMO_ISSUER: &str = "https://auth.example.com/";
/// The audience (`aud`) the demo's tokens carry and the verifier requires:
/// this API, so that a token minted for another service is refused here.
pub const DEMO_AUDIENCE: &str = "https://api.example.com/tenant-resolver";

/// How far a token's `exp` may lie in the past and still be accepted, for
/// clocks that disagree a little.
pub const CLOCK_SKEW: Duration = Duration::from_secs(30);

/// An HS256 key: 32 random bytes (RFC 7518 §3.2: at least the hash's size),
/// held in a [`SecretSlice`] so that `Debug` redacts it and it is zeroed on
/// drop. Never a constant in the source.
#[derive(Debug)]
pub struct SigningKey(SecretSlice<u8>);

impl SigningKey {
    /// A fresh key from the operating system's random source.
    ///
    /// # Errors
    ///
    /// The operating system could not provide random bytes.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = vec![0u8; 32];
        getrandom::fill(&mut bytes)?;
        Ok(Self(SecretSlice::from(bytes)))
    }
}

/// The claims the resolver reads from a verified token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user, as the identity provider names them.
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Present once the identity provider knows the user's organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
}

/// Why a bearer token was refused. Every kind ends in HTTP 401; the kind is
/// logged (at debug), never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer ..` header.
    Missing,
    /// Not a JWT, an algorithm other than HS256 (`alg: none` included), or a
    /// signature that does not match the key.
    BadSignature,
    /// `exp` has passed (beyond [`CLOCK_SKEW`]).
    Expired,
    /// `iss` is not the expected identity provider.
    WrongIssuer,
    /// `aud` does not name this API.
    WrongAudience,
    /// A required claim is missing or malformed.
    BadClaims,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthError::Missing => "no bearer token",
            AuthError::BadSignature => "token not signed with the expected key and algorithm",
            AuthError::Expired => "token expired",
            AuthError::WrongIssuer => "token from another issuer",
            AuthError::WrongAudience => "token for another audience",
            AuthError::BadClaims => "token claims missing or malformed",
        })
    }
}

impl std::error::Error for AuthError {}

impl From<jsonwebtoken::errors::Error> for AuthError {
    fn from(error: jsonwebtoken::errors::Error) -> Self {
        match error.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            ErrorKind::MissingRequiredClaim(_)
            | ErrorKind::InvalidClaimFormat(_)
            | ErrorKind::InvalidSubject
            | ErrorKind::ImmatureSignature => AuthError::BadClaims,
            // A malformed token, an unknown or unexpected `alg` (`none`
            // included), a signature that does not verify: all the same to
            // the caller.
            _ => AuthError::BadSignature,
        }
    }
}

/// Verifies bearer tokens: HS256 only, signed with the key, not expired,
/// from [`DEMO_ISSUER`] (or the issuer given), for the audience given.
#[derive(Debug)]
pub struct TokenVerifier {
    /// `jsonwebtoken`'s key redacts itself in `Debug` and is zeroed on drop.
    key: DecodingKey,
    validation: Validation,
}

impl TokenVerifier {
    /// A verifier for tokens signed with `key` by `issuer` for `audience`.
    ///
    /// # Errors
    ///
    /// `jsonwebtoken` refused the key (an empty HMAC key).
    pub fn new(
        key: &SigningKey,
        issuer: &str,
        audience: &str,
    ) -> Result<Self, jsonwebtoken::errors::Error> {
        // One algorithm, fixed here: the token's header never chooses it, so
        // neither `none` nor an algorithm confusion gets past `decode`.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = CLOCK_SKEW.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        Ok(Self {
            key: DecodingKey::from_secret(key.0.expose_secret())?,
            validation,
        })
    }

    /// The claims of `token`, if it verifies.
    ///
    /// # Errors
    ///
    /// Why the token was refused.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        Ok(jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)?.claims)
    }
}

/// The registered claims a token carries besides the resolver's own.
#[derive(Debug, Serialize)]
struct Signed<'a> {
    #[serde(flatten)]
    claims: &'a Claims,
    iss: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

/// The demo's identity provider: signs tokens with the start-up key. A real
/// service does not have one (its users' tokens come from the provider).
#[derive(Debug)]
pub struct DemoIssuer {
    key: EncodingKey,
    issuer: String,
    audience: String,
    lifetime: Duration,
}

impl DemoIssuer {
    /// An issuer of tokens valid for `lifetime`, from [`DEMO_ISSUER`] to
    /// [`DEMO_AUDIENCE`].
    ///
    /// # Errors
    ///
    /// `jsonwebtoken` refused the key (an empty HMAC key).
    pub fn new(key: &SigningKey, lifetime: Duration) -> Result<Self, jsonwebtoken::errors::Error> {
        Ok(Self {
            key: EncodingKey::from_secret(key.0.expose_secret())?,
            issuer: DEMO_ISSUER.to_owned(),
            audience: DEMO_AUDIENCE.to_owned(),
            lifetime,
        })
    }

    /// The same key, another issuer (for the tests: a wrong `iss`).
    pub fn with_issuer(mut self, issuer: &str) -> Self {
        self.issuer = issuer.to_owned();
        self
    }

    /// The same key, another audience (for the tests: a wrong `aud`).
    pub fn with_audience(mut self, audience: &str) -> Self {
        self.audience = audience.to_owned();
        self
    }

    /// A token for `claims`, issued now.
    ///
    /// # Errors
    ///
    /// The claims could not be serialised or signed.
    pub fn issue(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        self.issue_at(claims, jsonwebtoken::get_current_timestamp())
    }

    /// A token for `claims`, issued at `iat` (seconds since the Unix epoch):
    /// a token issued long enough ago has expired.
    ///
    /// # Errors
    ///
    /// The claims could not be serialised or signed.
    pub fn issue_at(
        &self,
        claims: &Claims,
        iat: u64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &self.registered(claims, iat),
            &self.key,
        )
    }

    /// What an attacker sends: the claims of [`issue`](Self::issue), valid
    /// issuer, audience and expiry included, under `alg: none` and with no
    /// signature. For the demo and the tests, to show that [`TokenVerifier`]
    /// refuses it; `jsonwebtoken` cannot make one, so it is put together here.
    ///
    /// # Errors
    ///
    /// The claims could not be serialised.
    pub fn unsigned(&self, claims: &Claims) -> Result<String, serde_json::Error> {
        let payload = self.registered(claims, jsonwebtoken::get_current_timestamp());
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload)?);
        Ok(format!("{header}.{payload}."))
    }

    fn registered<'a>(&'a self, claims: &'a Claims, iat: u64) -> Signed<'a> {
        Signed {
            claims,
            iss: &self.issuer,
            aud: &self.audience,
            iat,
            exp: iat.saturating_add(self.lifetime.as_secs()),
        }
    }
}
