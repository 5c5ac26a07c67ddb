//! SASL pieces every Portico protocol shares: decoding the client's PLAIN (RFC 4616) and
//! LOGIN messages, and [`Secret`], the type passwords travel in so that they never reach
//! a log.
//!
//! Only decoding lives here; each protocol keeps its own exchange (`+ `, `334`, `*` to
//! cancel, initial responses) and its own mapping of [`SaslError`] to the wire. This
//! crate depends on nothing of Portico's and no protocol depends on another through it.

use std::fmt;

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// A password on its way to the credential check; `Debug` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Standard alphabet, padding optional: some clients strip the `=` padding, and it
/// carries no information.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a client's SASL message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslError {
    /// Not base64.
    NotBase64,
    /// Base64, but not the mechanism's message (wrong shape, not UTF-8, no user).
    Malformed,
    /// A non-empty authorization identity other than the authentication identity:
    /// acting as another user is not offered.
    AuthzidMismatch,
}

/// The identity and password of a valid PLAIN message.
#[derive(Debug, PartialEq, Eq)]
pub struct PlainCredentials {
    pub authcid: String,
    pub password: Secret,
}

/// Decodes base64, where a lone `=` is the empty message (RFC 4954 §4, RFC 5034 §4).
pub fn decode_base64(encoded: &[u8]) -> Result<Vec<u8>, SaslError> {
    let encoded = if encoded == b"=" { &b""[..] } else { encoded };
    BASE64.decode(encoded).map_err(|_| SaslError::NotBase64)
}

/// A PLAIN message (RFC 4616 §2): `authzid NUL authcid NUL passwd`, base64.
pub fn decode_plain(encoded: &[u8]) -> Result<PlainCredentials, SaslError> {
    let decoded = decode_base64(encoded)?;
    let mut parts = decoded.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    let text = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| SaslError::Malformed)
    };
    let (authzid, authcid, password) = (text(authzid)?, text(authcid)?, text(password)?);
    if authcid.is_empty() {
        return Err(SaslError::Malformed);
    }
    if !authzid.is_empty() && authzid != authcid {
        return Err(SaslError::AuthzidMismatch);
    }
    Ok(PlainCredentials {
        authcid,
        password: Secret(password),
    })
}

/// A LOGIN response (user name or password): base64 of UTF-8 text.
pub fn decode_text(encoded: &[u8]) -> Result<String, SaslError> {
    String::from_utf8(decode_base64(encoded)?).map_err(|_| SaslError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    fn enc(raw: &[u8]) -> Vec<u8> {
        STANDARD.encode(raw).into_bytes()
    }

    #[test]
    fn plain_with_empty_or_equal_authzid() {
        for raw in [&b"\0alice\0pw"[..], b"alice\0alice\0pw"] {
            let creds = decode_plain(&enc(raw)).unwrap();
            assert_eq!(creds.authcid, "alice");
            assert_eq!(creds.password.expose(), "pw");
        }
    }

    #[test]
    fn plain_errors() {
        assert_eq!(decode_plain(b"!!!"), Err(SaslError::NotBase64));
        assert_eq!(decode_plain(b"="), Err(SaslError::Malformed));
        assert_eq!(decode_plain(&enc(b"alice\0pw")), Err(SaslError::Malformed));
        assert_eq!(decode_plain(&enc(b"a\0b\0c\0d")), Err(SaslError::Malformed));
        assert_eq!(decode_plain(&enc(b"\0\0pw")), Err(SaslError::Malformed));
        assert_eq!(
            decode_plain(&enc(b"\0al\xffice\0pw")),
            Err(SaslError::Malformed)
        );
        assert_eq!(
            decode_plain(&enc(b"bob\0alice\0pw")),
            Err(SaslError::AuthzidMismatch)
        );
    }

    #[test]
    fn padding_is_optional_and_empty_password_passes() {
        let unpadded = STANDARD
            .encode(b"\0alice\0")
            .trim_end_matches('=')
            .to_string();
        let creds = decode_plain(unpadded.as_bytes()).unwrap();
        assert_eq!(creds.password.expose(), "");
    }

    #[test]
    fn login_text_and_secrets_are_redacted() {
        assert_eq!(decode_text(&enc(b"alice")).unwrap(), "alice");
        assert_eq!(decode_text(b"=").unwrap(), "");
        assert_eq!(decode_text(&enc(b"\xff")), Err(SaslError::Malformed));
        assert_eq!(format!("{:?}", Secret::new("pw".into())), "<redacted>");
    }
}
