//! Signed session tokens and CSRF tokens for the settings page, kept in cookies and
//! forms so that any frontend holding the key can check them without shared state.
//!
//! A session token is `base64url(payload) "." base64url(tag)`, where the payload is
//! a version byte, a random 16-byte session id, the expiry (Unix seconds, big-endian
//! u64) and the address, and the tag is HMAC-SHA256 over a purpose label and the
//! payload. The label keeps a session tag from ever passing as a CSRF tag or the
//! other way round. Verification checks the tag in constant time before reading
//! anything from the payload.
//!
//! A CSRF token is the HMAC of what it is bound to: the session id once signed in, or
//! before that a random pre-session cookie value ([`new_pre_session_id`]), so a form
//! posted from another site, which cannot read either cookie, is refused.
//!
//! Cookies should be `Secure; HttpOnly; SameSite=Strict; Path=/`, named with the
//! `__Host-` prefix ([`SESSION_COOKIE`], [`PRE_SESSION_COOKIE`]) so no other host can
//! set them. Every node of a cluster must share one [`TokenKey`] for a session to
//! survive a change of frontend; one generated at start-up signs out everyone at a
//! restart, which is safe.
//!
//! Crypto comes from aws-lc-rs, the provider rustls already builds with in the
//! server: its HMAC, constant-time tag check and the operating system's CSPRNG.

use std::fmt;

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use thiserror::Error;

use crate::address::MAX_ADDRESS_LEN;

/// Length of a [`TokenKey`] in bytes.
pub const KEY_LEN: usize = 32;
/// Random bytes in a session id or a pre-session cookie value.
pub const SESSION_ID_LEN: usize = 16;
/// Longest token looked at; anything longer is refused before decoding.
pub const MAX_TOKEN_LEN: usize = 1024;
/// Suggested name of the session cookie.
pub const SESSION_COOKIE: &str = "__Host-portico-session";
/// Suggested name of the cookie that binds the sign-in form's CSRF token.
pub const PRE_SESSION_COOKIE: &str = "__Host-portico-pre-session";

const SESSION_VERSION: u8 = 1;
const SESSION_LABEL: &[u8] = b"portico session v1\0";
const CSRF_SESSION_LABEL: &[u8] = b"portico csrf session v1\0";
const CSRF_PRE_SESSION_LABEL: &[u8] = b"portico csrf pre-session v1\0";
/// Version, id, expiry.
const PAYLOAD_HEADER_LEN: usize = 1 + SESSION_ID_LEN + 8;

/// The secret that signs tokens: 32 bytes from a CSPRNG. `Debug` does not show it.
#[derive(Clone)]
pub struct TokenKey {
    bytes: [u8; KEY_LEN],
    key: hmac::Key,
}

impl TokenKey {
    /// A new random key.
    pub fn generate() -> Result<TokenKey, TokenError> {
        Ok(TokenKey::from_bytes(random()?))
    }

    /// A key read back from storage (a key file shared by the cluster's nodes).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> TokenKey {
        TokenKey {
            bytes,
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
        }
    }

    /// The key's bytes, to store it.
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.bytes
    }

    fn tag(&self, label: &[u8], message: &[u8]) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(label);
        context.update(message);
        context.sign()
    }

    /// Constant-time check of `tag` against the HMAC of `label` and `message`.
    fn verify(&self, label: &[u8], message: &[u8], tag: &[u8]) -> bool {
        let mut signed = Vec::with_capacity(label.len() + message.len());
        signed.extend_from_slice(label);
        signed.extend_from_slice(message);
        hmac::verify(&self.key, &signed, tag).is_ok()
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

/// Why a token could not be issued.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    #[error("the system's random number generator failed")]
    Random,
    #[error("the address is longer than {MAX_ADDRESS_LEN} bytes")]
    AddressTooLong,
}

fn random<const N: usize>() -> Result<[u8; N], TokenError> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| TokenError::Random)?;
    Ok(bytes)
}

/// A session a valid token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The address that signed in.
    pub address: String,
    /// The session's random id (base64url), what its CSRF token is bound to.
    pub id: String,
    /// When it stops being valid, Unix seconds.
    pub expires: u64,
}

/// A session token for `address`, valid until `expires_unix`, with a new random
/// session id. URL- and cookie-safe (base64url and one `.`).
pub fn issue_session(
    key: &TokenKey,
    address: &str,
    expires_unix: u64,
) -> Result<String, TokenError> {
    if address.len() > MAX_ADDRESS_LEN {
        return Err(TokenError::AddressTooLong);
    }
    let id: [u8; SESSION_ID_LEN] = random()?;
    let mut payload = Vec::with_capacity(PAYLOAD_HEADER_LEN + address.len());
    payload.push(SESSION_VERSION);
    payload.extend_from_slice(&id);
    payload.extend_from_slice(&expires_unix.to_be_bytes());
    payload.extend_from_slice(address.as_bytes());
    let tag = key.tag(SESSION_LABEL, &payload);
    Ok(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&payload),
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    ))
}

/// The session `token` stands for, if `key` signed it, nothing in it was changed and
/// it has not expired at `now_unix`; `None` otherwise, without saying why (a client
/// is simply signed out).
pub fn verify_session(key: &TokenKey, token: &str, now_unix: u64) -> Option<Session> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let (payload, tag) = token.split_once('.')?;
    let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    if !key.verify(SESSION_LABEL, &payload, &tag) {
        return None;
    }
    let (header, address) = payload.split_at_checked(PAYLOAD_HEADER_LEN)?;
    let (version, rest) = header.split_first()?;
    let (id, expires) = rest.split_at(SESSION_ID_LEN);
    let expires = u64::from_be_bytes(expires.try_into().ok()?);
    if *version != SESSION_VERSION || now_unix >= expires {
        return None;
    }
    Some(Session {
        address: String::from_utf8(address.to_vec()).ok()?,
        id: URL_SAFE_NO_PAD.encode(id),
        expires,
    })
}

/// What a CSRF token is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrfScope<'a> {
    /// A signed-in session: its [`Session::id`].
    Session(&'a str),
    /// The sign-in form, before any session: the pre-session cookie's value.
    PreSession(&'a str),
}

impl CsrfScope<'_> {
    fn parts(&self) -> (&'static [u8], &[u8]) {
        match self {
            CsrfScope::Session(id) => (CSRF_SESSION_LABEL, id.as_bytes()),
            CsrfScope::PreSession(value) => (CSRF_PRE_SESSION_LABEL, value.as_bytes()),
        }
    }
}

/// A random value for the pre-session cookie (base64url), set when the sign-in form is
/// shown to a browser that has none.
pub fn new_pre_session_id() -> Result<String, TokenError> {
    let bytes: [u8; SESSION_ID_LEN] = random()?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The CSRF token for forms shown in `scope`.
pub fn csrf_for(key: &TokenKey, scope: CsrfScope<'_>) -> String {
    let (label, bound_to) = scope.parts();
    URL_SAFE_NO_PAD.encode(key.tag(label, bound_to).as_ref())
}

/// Whether `token` (from a posted form) is the CSRF token of `scope` (from the
/// request's cookie). An empty scope value never verifies: a missing cookie must not
/// match a form.
pub fn verify_csrf(key: &TokenKey, scope: CsrfScope<'_>, token: &str) -> bool {
    let (label, bound_to) = scope.parts();
    if bound_to.is_empty() || token.len() > MAX_TOKEN_LEN {
        return false;
    }
    match URL_SAFE_NO_PAD.decode(token) {
        Ok(tag) => key.verify(label, bound_to, &tag),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_796_475_845;

    fn key() -> TokenKey {
        TokenKey::generate().unwrap()
    }

    #[test]
    fn a_session_token_round_trips_until_it_expires() {
        let key = key();
        let token = issue_session(&key, "alice@example.com", NOW + 3600).unwrap();
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        );
        let session = verify_session(&key, &token, NOW).unwrap();
        assert_eq!(session.address, "alice@example.com");
        assert_eq!(session.expires, NOW + 3600);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(&session.id).unwrap().len(),
            SESSION_ID_LEN
        );
        assert!(verify_session(&key, &token, NOW + 3599).is_some());
        assert_eq!(verify_session(&key, &token, NOW + 3600), None);
        assert_eq!(verify_session(&key, &token, u64::MAX), None);
    }

    #[test]
    fn each_session_gets_its_own_id() {
        let key = key();
        let a = issue_session(&key, "alice@example.com", NOW + 60).unwrap();
        let b = issue_session(&key, "alice@example.com", NOW + 60).unwrap();
        assert_ne!(a, b);
        assert_ne!(
            verify_session(&key, &a, NOW).unwrap().id,
            verify_session(&key, &b, NOW).unwrap().id
        );
    }

    #[test]
    fn forged_altered_truncated_and_foreign_tokens_are_refused() {
        let key = key();
        let token = issue_session(&key, "alice@example.com", NOW + 3600).unwrap();
        let (payload, tag) = token.split_once('.').unwrap();

        // Signed by another key.
        assert_eq!(
            verify_session(&TokenKey::generate().unwrap(), &token, NOW),
            None
        );
        // Another address, with the old tag.
        let mut raw = URL_SAFE_NO_PAD.decode(payload).unwrap();
        let at = raw.len() - "alice@example.com".len();
        raw.truncate(at);
        raw.extend_from_slice(b"admin@example.com");
        let altered_address = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(&raw));
        assert_eq!(verify_session(&key, &altered_address, NOW), None);
        // A later expiry, with the old tag.
        let mut raw = URL_SAFE_NO_PAD.decode(payload).unwrap();
        raw[1 + SESSION_ID_LEN] = 0xff;
        let extended = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(&raw));
        assert_eq!(verify_session(&key, &extended, NOW), None);
        // Every single character changed, in turn.
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).unwrap();
            assert_eq!(verify_session(&key, &changed, NOW), None, "position {i}");
        }
        // Truncated anywhere.
        for end in 0..token.len() {
            assert_eq!(
                verify_session(&key, &token[..end], NOW),
                None,
                "length {end}"
            );
        }
        // Forged from nothing, tag made with a guessed key or left empty.
        let forged_key = TokenKey::from_bytes([0; KEY_LEN]);
        let forged = issue_session(&forged_key, "alice@example.com", NOW + 3600).unwrap();
        assert_eq!(verify_session(&key, &forged, NOW), None);
        assert_eq!(verify_session(&key, &format!("{payload}."), NOW), None);
        assert_eq!(verify_session(&key, payload, NOW), None);
        assert_eq!(verify_session(&key, &format!("{token}.{tag}"), NOW), None);
        assert_eq!(verify_session(&key, &format!("{payload}={tag}"), NOW), None);
        assert_eq!(verify_session(&key, "", NOW), None);
        assert_eq!(
            verify_session(&key, &"A".repeat(MAX_TOKEN_LEN + 1), NOW),
            None
        );
        // A CSRF tag presented as a session tag.
        let csrf = csrf_for(&key, CsrfScope::Session(payload));
        assert_eq!(
            verify_session(&key, &format!("{payload}.{csrf}"), NOW),
            None
        );
    }

    #[test]
    fn a_stored_key_verifies_what_it_signed() {
        let key = key();
        let token = issue_session(&key, "bob@example.com", NOW + 60).unwrap();
        let restored = TokenKey::from_bytes(key.to_bytes());
        assert_eq!(
            verify_session(&restored, &token, NOW).unwrap().address,
            "bob@example.com"
        );
        assert_eq!(format!("{key:?}"), "TokenKey(<redacted>)");
    }

    #[test]
    fn overlong_addresses_are_not_signed() {
        let address = format!("{}@example.com", "a".repeat(250));
        assert_eq!(
            issue_session(&key(), &address, NOW),
            Err(TokenError::AddressTooLong)
        );
    }

    #[test]
    fn csrf_tokens_are_bound_to_their_session() {
        let key = key();
        let mine = verify_session(
            &key,
            &issue_session(&key, "alice@example.com", NOW + 60).unwrap(),
            NOW,
        )
        .unwrap();
        let theirs = verify_session(
            &key,
            &issue_session(&key, "eve@example.com", NOW + 60).unwrap(),
            NOW,
        )
        .unwrap();
        let token = csrf_for(&key, CsrfScope::Session(&mine.id));
        assert!(verify_csrf(&key, CsrfScope::Session(&mine.id), &token));
        assert!(!verify_csrf(&key, CsrfScope::Session(&theirs.id), &token));
        let their_token = csrf_for(&key, CsrfScope::Session(&theirs.id));
        assert!(!verify_csrf(
            &key,
            CsrfScope::Session(&mine.id),
            &their_token
        ));
        // The same value as a pre-session is another scope.
        assert!(!verify_csrf(&key, CsrfScope::PreSession(&mine.id), &token));
        // Another key, a changed token, junk.
        assert!(!verify_csrf(
            &TokenKey::generate().unwrap(),
            CsrfScope::Session(&mine.id),
            &token
        ));
        let mut changed = token.clone().into_bytes();
        changed[0] = if changed[0] == b'A' { b'B' } else { b'A' };
        assert!(!verify_csrf(
            &key,
            CsrfScope::Session(&mine.id),
            &String::from_utf8(changed).unwrap()
        ));
        assert!(!verify_csrf(
            &key,
            CsrfScope::Session(&mine.id),
            &token[..token.len() - 1]
        ));
        assert!(!verify_csrf(&key, CsrfScope::Session(&mine.id), ""));
        assert!(!verify_csrf(
            &key,
            CsrfScope::Session(&mine.id),
            "not base64!"
        ));
    }

    #[test]
    fn the_sign_in_form_is_bound_to_its_pre_session_cookie() {
        let key = key();
        let cookie = new_pre_session_id().unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(&cookie).unwrap().len(),
            SESSION_ID_LEN
        );
        assert_ne!(cookie, new_pre_session_id().unwrap());
        let token = csrf_for(&key, CsrfScope::PreSession(&cookie));
        assert!(verify_csrf(&key, CsrfScope::PreSession(&cookie), &token));
        let other_cookie = new_pre_session_id().unwrap();
        assert!(!verify_csrf(
            &key,
            CsrfScope::PreSession(&other_cookie),
            &token
        ));
        // No cookie at all never matches, even a token made for the empty value.
        let empty = csrf_for(&key, CsrfScope::PreSession(""));
        assert!(!verify_csrf(&key, CsrfScope::PreSession(""), &empty));
    }
}
