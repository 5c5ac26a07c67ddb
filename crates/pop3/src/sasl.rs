//! The SASL PLAIN mechanism (RFC 4616) as carried by POP3 AUTH (RFC 5034 §4).
//!
//! Only the decoding of the client's single message lives here; the exchange itself
//! (`AUTH PLAIN`, the `+ ` continuation, `*` to cancel) is session state.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Standard alphabet, padding optional: some clients strip the `=` padding, and it
/// carries no information.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The identity and password from a valid PLAIN message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PlainCredentials {
    pub(crate) authcid: String,
    pub(crate) password: String,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PlainError {
    /// Not base64, or not `authzid NUL authcid NUL passwd` in UTF-8.
    Malformed,
    /// A non-empty authorization identity other than the authentication identity: acting
    /// as another user is not offered.
    AuthzidMismatch,
}

/// Decodes a base64 PLAIN message. `=` stands for an empty message (RFC 5034 §4), which is
/// malformed for PLAIN.
pub(crate) fn decode_plain(encoded: &[u8]) -> Result<PlainCredentials, PlainError> {
    let encoded = if encoded == b"=" { &b""[..] } else { encoded };
    let decoded = BASE64.decode(encoded).map_err(|_| PlainError::Malformed)?;
    let mut parts = decoded.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PlainError::Malformed);
    };
    let authzid = std::str::from_utf8(authzid).map_err(|_| PlainError::Malformed)?;
    let authcid = std::str::from_utf8(authcid).map_err(|_| PlainError::Malformed)?;
    let password = std::str::from_utf8(password).map_err(|_| PlainError::Malformed)?;
    if authcid.is_empty() {
        return Err(PlainError::Malformed);
    }
    if !authzid.is_empty() && authzid != authcid {
        return Err(PlainError::AuthzidMismatch);
    }
    Ok(PlainCredentials {
        authcid: authcid.to_string(),
        password: password.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    fn enc(raw: &[u8]) -> Vec<u8> {
        STANDARD.encode(raw).into_bytes()
    }

    fn creds(user: &str, pw: &str) -> Result<PlainCredentials, PlainError> {
        Ok(PlainCredentials {
            authcid: user.to_string(),
            password: pw.to_string(),
        })
    }

    #[test]
    fn empty_authzid() {
        assert_eq!(
            decode_plain(&enc(b"\0alice\0s3cret pw")),
            creds("alice", "s3cret pw")
        );
    }

    #[test]
    fn authzid_equal_to_authcid() {
        assert_eq!(
            decode_plain(&enc(b"alice\0alice\0pw")),
            creds("alice", "pw")
        );
    }

    #[test]
    fn authzid_other_user() {
        assert_eq!(
            decode_plain(&enc(b"bob\0alice\0pw")),
            Err(PlainError::AuthzidMismatch)
        );
    }

    #[test]
    fn padding_is_optional() {
        let mut e = enc(b"\0alice\0pw");
        while e.last() == Some(&b'=') {
            e.pop();
        }
        assert_eq!(decode_plain(&e), creds("alice", "pw"));
    }

    #[test]
    fn malformed_messages() {
        for bad in [
            b"=" as &[u8],
            b"",
            b"not base64!",
            b"*",
            &enc(b"alice\0pw"),
            &enc(b"\0\0pw"),
            &enc(b"\0alice\0pw\0extra"),
            &enc(b"\0al\xffice\0pw"),
            &enc(b"\0alice\0p\xffw"),
        ] {
            assert_eq!(decode_plain(bad), Err(PlainError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn empty_password_is_passed_on() {
        assert_eq!(decode_plain(&enc(b"\0alice\0")), creds("alice", ""));
    }
}
