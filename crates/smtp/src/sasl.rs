//! Decoding of the client's SASL messages for AUTH (RFC 4954): PLAIN (RFC 4616) and
//! LOGIN (draft-murchison-sasl-login).
//!
//! Only decoding lives here; the exchange itself (`334` challenges, `*` to cancel, the
//! initial response) is session state. The POP3 crate has the same PLAIN decoding; it is
//! repeated rather than shared because protocol crates must not depend on each other.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::reply::ClientError;

/// Standard alphabet, padding optional: some clients strip the `=` padding, and it carries
/// no information.
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

/// Decodes base64, where a lone `=` is the empty message (RFC 4954 §4).
fn decode(encoded: &[u8]) -> Result<Vec<u8>, ClientError> {
    let encoded = if encoded == b"=" { &b""[..] } else { encoded };
    BASE64.decode(encoded).map_err(|_| ClientError::BadBase64)
}

/// A PLAIN message: `authzid NUL authcid NUL passwd`. A non-empty authorization identity
/// other than the authentication identity would be acting as another user, which is not
/// offered; it is refused like bad credentials, saying nothing more.
pub(crate) fn decode_plain(encoded: &[u8]) -> Result<PlainCredentials, ClientError> {
    let decoded = decode(encoded)?;
    let mut parts = decoded.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ClientError::BadSaslResponse);
    };
    let text = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| ClientError::BadSaslResponse)
    };
    let (authzid, authcid, password) = (text(authzid)?, text(authcid)?, text(password)?);
    if authcid.is_empty() {
        return Err(ClientError::BadSaslResponse);
    }
    if !authzid.is_empty() && authzid != authcid {
        return Err(ClientError::BadCredentials);
    }
    Ok(PlainCredentials { authcid, password })
}

/// A LOGIN response (user name or password): base64 of UTF-8 text.
pub(crate) fn decode_text(encoded: &[u8]) -> Result<String, ClientError> {
    String::from_utf8(decode(encoded)?).map_err(|_| ClientError::BadSaslResponse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    fn enc(raw: &[u8]) -> Vec<u8> {
        STANDARD.encode(raw).into_bytes()
    }

    fn creds(user: &str, pw: &str) -> Result<PlainCredentials, ClientError> {
        Ok(PlainCredentials {
            authcid: user.to_string(),
            password: pw.to_string(),
        })
    }

    #[test]
    fn plain_with_empty_or_equal_authzid() {
        assert_eq!(
            decode_plain(&enc(b"\0alice\0s3cret pw")),
            creds("alice", "s3cret pw")
        );
        assert_eq!(
            decode_plain(&enc(b"alice\0alice\0pw")),
            creds("alice", "pw")
        );
    }

    #[test]
    fn plain_acting_as_another_user_is_refused() {
        assert_eq!(
            decode_plain(&enc(b"bob\0alice\0pw")),
            Err(ClientError::BadCredentials)
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
    fn not_base64() {
        for bad in [&b"not base64!"[..], b"*", b"a"] {
            assert_eq!(decode_plain(bad), Err(ClientError::BadBase64), "{bad:?}");
            assert_eq!(decode_text(bad), Err(ClientError::BadBase64), "{bad:?}");
        }
    }

    #[test]
    fn malformed_plain_messages() {
        for bad in [
            b"=" as &[u8],
            b"",
            &enc(b"alice\0pw"),
            &enc(b"\0\0pw"),
            &enc(b"\0alice\0pw\0extra"),
            &enc(b"\0al\xffice\0pw"),
            &enc(b"\0alice\0p\xffw"),
        ] {
            assert_eq!(
                decode_plain(bad),
                Err(ClientError::BadSaslResponse),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn login_text() {
        assert_eq!(decode_text(b"YWxpY2U="), Ok("alice".to_string()));
        assert_eq!(decode_text(b"="), Ok(String::new()));
        assert_eq!(
            decode_text(&enc(b"\xff")),
            Err(ClientError::BadSaslResponse)
        );
    }
}
