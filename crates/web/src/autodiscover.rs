//! Microsoft Autodiscover, "plain old XML" (POX) form: Outlook POSTs a request naming
//! an address to `/autodiscover/autodiscover.xml` and gets back the POP3, IMAP and
//! SMTP settings for it ([MS-OXDSCLI]; Exchange's "POX Autodiscover" reference).
//!
//! ```text
//! <Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
//!   <Request>
//!     <EMailAddress>alice@example.com</EMailAddress>
//!     <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
//!   </Request>
//! </Autodiscover>
//! ```
//!
//! The request comes from anyone on the network, so [`parse_request`] is strict about
//! what it reads and careless of nothing: a size limit before parsing, UTF-8 only, no
//! DOCTYPE (so no entity can be declared, let alone expanded; quick-xml never fetches
//! external ones either), only XML's predefined entities and character references,
//! and a cap on nesting. Elements it does not know are skipped, as Exchange does, so
//! a newer client's extra fields do no harm.
//!
//! Each protocol's encryption is told twice: `<SSL>` (`on` when the logon must be
//! protected, which is how Microsoft documents it; the default when absent is `on`)
//! and `<Encryption>` (`SSL` = implicit TLS, `TLS` = STARTTLS, `None`), which Outlook
//! reads in preference to `<SSL>`. A client that knows only `<SSL>` thus sees `on` for
//! a STARTTLS port and fails to connect, rather than sending a password in the clear.
//!
//! [MS-OXDSCLI]: https://learn.microsoft.com/en-us/openspecs/exchange_server_protocols/ms-oxdscli/

use portico_cluster::{ConnectionSetting, Encryption};
use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::reader::NsReader;
use thiserror::Error;

use crate::address::{domain_of, is_valid_address};
use crate::settings::ClientSettings;
use crate::xml::XmlWriter;

/// The namespace of an Outlook Autodiscover request.
pub const REQUEST_NAMESPACE: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006";
/// The namespace of the outer `<Autodiscover>` element of every response.
pub const RESPONSE_NAMESPACE: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006";
/// The only response schema answered: Outlook's account settings.
pub const OUTLOOK_RESPONSE_SCHEMA: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a";
/// A sensible `max_len` for [`parse_request`]: a real request is about 350 bytes.
pub const DEFAULT_MAX_REQUEST_LEN: usize = 8 * 1024;
/// Deepest element nesting read; a request needs three levels.
const MAX_DEPTH: usize = 16;
/// Longest piece of a parser message repeated in an error.
const MAX_DETAIL_LEN: usize = 120;

/// A request [`parse_request`] accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutodiscoverRequest {
    /// A syntactically valid mail address, surrounding white space removed. Whether
    /// the cluster serves its domain is for the caller to decide.
    pub email_address: String,
}

impl AutodiscoverRequest {
    /// The domain of the address, as written (compare case-insensitively).
    pub fn domain(&self) -> &str {
        domain_of(&self.email_address).unwrap_or_default()
    }
}

/// Why a request was refused. Each is the client's fault: answer `400 Bad Request`
/// with the message (`to_string()`) as a `text/plain` body. The messages never repeat
/// the client's values, only what was expected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AutodiscoverError {
    #[error("the request body is longer than {max} bytes")]
    TooLong { max: usize },
    #[error("the request body is not well-formed UTF-8 XML: {0}")]
    NotXml(String),
    #[error("DOCTYPE declarations are not accepted")]
    Doctype,
    #[error("the root element must be <Autodiscover>")]
    WrongRoot,
    #[error("<Autodiscover> must be in the namespace {REQUEST_NAMESPACE}")]
    WrongNamespace,
    #[error("the request has more than one <{0}>")]
    Duplicate(&'static str),
    #[error("the request has no <Request><EMailAddress>")]
    MissingAddress,
    #[error("<EMailAddress> is not a valid mail address")]
    InvalidAddress,
    #[error("the request has no <Request><AcceptableResponseSchema>")]
    MissingResponseSchema,
    #[error("the only response schema offered is {OUTLOOK_RESPONSE_SCHEMA}")]
    UnsupportedResponseSchema,
}

/// The text field being read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    EMailAddress,
    AcceptableResponseSchema,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::EMailAddress => "EMailAddress",
            Field::AcceptableResponseSchema => "AcceptableResponseSchema",
        }
    }
}

/// Reads an Autodiscover request of at most `max_len` bytes (see
/// [`DEFAULT_MAX_REQUEST_LEN`]). The caller should stop reading the body at `max_len`
/// too, so a client cannot make the server buffer more.
pub fn parse_request(
    body: &[u8],
    max_len: usize,
) -> Result<AutodiscoverRequest, AutodiscoverError> {
    if body.len() > max_len {
        return Err(AutodiscoverError::TooLong { max: max_len });
    }
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    let text = std::str::from_utf8(body)
        .map_err(|_| AutodiscoverError::NotXml("it is not UTF-8".into()))?;
    let mut reader = NsReader::from_str(text);
    reader.config_mut().expand_empty_elements = true;
    reader.config_mut().check_end_names = true;

    let mut depth = 0usize;
    let mut root_seen = false;
    let mut in_request = false;
    let mut reading: Option<Field> = None;
    let mut value = String::new();
    let mut address: Option<String> = None;
    let mut schema: Option<String> = None;
    loop {
        let (namespace, event) = reader
            .read_resolved_event()
            .map_err(|e| AutodiscoverError::NotXml(clip(&e.to_string())))?;
        let in_namespace = is_request_namespace(&namespace);
        match event {
            Event::Start(start) => {
                if root_seen && depth == 0 {
                    return Err(not_xml("there is content after the root element"));
                }
                if reading.is_some() {
                    return Err(not_xml("a text field holds an element"));
                }
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(not_xml("elements are nested too deeply"));
                }
                let local = start.local_name();
                match depth {
                    1 => {
                        if local.as_ref() != "Autodiscover" {
                            return Err(AutodiscoverError::WrongRoot);
                        }
                        if !in_namespace {
                            return Err(AutodiscoverError::WrongNamespace);
                        }
                        root_seen = true;
                    }
                    2 => in_request = in_namespace && local.as_ref() == "Request",
                    3 if in_request && in_namespace => {
                        let (field, slot) = match local.as_ref() {
                            "EMailAddress" => (Field::EMailAddress, &address),
                            "AcceptableResponseSchema" => {
                                (Field::AcceptableResponseSchema, &schema)
                            }
                            _ => continue,
                        };
                        if slot.is_some() {
                            return Err(AutodiscoverError::Duplicate(field.name()));
                        }
                        reading = Some(field);
                        value.clear();
                    }
                    _ => {}
                }
            }
            Event::End(_) => {
                if let Some(field) = reading.take() {
                    let text = value.trim().to_string();
                    match field {
                        Field::EMailAddress => address = Some(text),
                        Field::AcceptableResponseSchema => schema = Some(text),
                    }
                }
                depth = depth.saturating_sub(1);
                if depth == 1 {
                    in_request = false;
                }
            }
            Event::Text(text) => {
                let text = text.xml10_content();
                if reading.is_some() {
                    value.push_str(&text);
                } else if depth == 0 && !text.trim().is_empty() {
                    return Err(not_xml("there is text outside the root element"));
                }
            }
            Event::CData(data) => {
                if reading.is_some() {
                    value.push_str(&data.xml10_content());
                } else if depth == 0 {
                    return Err(not_xml("there is text outside the root element"));
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => quick_xml::escape::resolve_xml_entity(&reference)
                        .ok_or_else(|| not_xml("it uses an undeclared entity"))?
                        .to_string(),
                    Err(_) => return Err(not_xml("it has a bad character reference")),
                };
                if reading.is_some() {
                    value.push_str(&resolved);
                } else if depth == 0 {
                    return Err(not_xml("there is text outside the root element"));
                }
            }
            Event::DocType(_) => return Err(AutodiscoverError::Doctype),
            Event::Empty(_) => return Err(not_xml("an empty element was not expanded")),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !root_seen {
        return Err(not_xml("there is no root element"));
    }
    if depth != 0 {
        return Err(not_xml("the root element is not closed"));
    }
    let address = address.ok_or(AutodiscoverError::MissingAddress)?;
    if !is_valid_address(&address) {
        return Err(AutodiscoverError::InvalidAddress);
    }
    let schema = schema.ok_or(AutodiscoverError::MissingResponseSchema)?;
    if !is_outlook_response_schema(&schema) {
        return Err(AutodiscoverError::UnsupportedResponseSchema);
    }
    Ok(AutodiscoverRequest {
        email_address: address,
    })
}

fn not_xml(why: &str) -> AutodiscoverError {
    AutodiscoverError::NotXml(why.to_string())
}

/// A parser message cut short and kept to printable ASCII, since it may quote the
/// client's input.
fn clip(message: &str) -> String {
    message
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(MAX_DETAIL_LEN)
        .collect()
}

fn is_request_namespace(namespace: &ResolveResult<'_>) -> bool {
    match namespace {
        ResolveResult::Bound(Namespace(uri)) => {
            *uri == REQUEST_NAMESPACE || quirk_https_schema_uri(uri, REQUEST_NAMESPACE)
        }
        _ => false,
    }
}

fn is_outlook_response_schema(uri: &str) -> bool {
    uri == OUTLOOK_RESPONSE_SCHEMA || quirk_https_schema_uri(uri, OUTLOOK_RESPONSE_SCHEMA)
}

/// Microsoft's online POX reference prints the schema URIs with `https://`, and
/// clients written from it send them that way; the URIs are names, not addresses, so
/// the `https` spelling is taken to mean the same schema.
fn quirk_https_schema_uri(uri: &str, canonical: &str) -> bool {
    match (
        uri.strip_prefix("https://"),
        canonical.strip_prefix("http://"),
    ) {
        (Some(rest), Some(canonical_rest)) => rest == canonical_rest,
        _ => false,
    }
}

/// The Outlook settings response for `email` (an address [`parse_request`] accepted
/// and the caller found it serves): one `<Protocol>` per setting, IMAP, then POP3,
/// then SMTP, each in the order given. Serve it as `text/xml; charset=utf-8` with
/// `200 OK`.
pub fn response(email: &str, settings: &ClientSettings) -> String {
    let mut xml = XmlWriter::new();
    xml.open("Autodiscover", &[("xmlns", RESPONSE_NAMESPACE)]);
    xml.open("Response", &[("xmlns", OUTLOOK_RESPONSE_SCHEMA)]);
    xml.open("Account", &[]);
    xml.text_element("AccountType", "email");
    xml.text_element("Action", "settings");
    for (kind, list) in [
        ("IMAP", &settings.imap),
        ("POP3", &settings.pop3),
        ("SMTP", &settings.smtp),
    ] {
        for setting in list {
            protocol(&mut xml, kind, email, setting);
        }
    }
    xml.finish()
}

fn protocol(xml: &mut XmlWriter, kind: &str, email: &str, setting: &ConnectionSetting) {
    xml.open("Protocol", &[]);
    xml.text_element("Type", kind);
    xml.text_element("Server", &setting.host);
    xml.text_element("Port", &setting.port.to_string());
    xml.text_element("LoginName", email);
    xml.text_element("DomainRequired", "off");
    xml.text_element("SPA", "off");
    let (ssl, encryption) = encryption_words(setting.encryption);
    xml.text_element("SSL", ssl);
    xml.text_element("Encryption", encryption);
    xml.text_element("AuthRequired", "on");
    if kind == "SMTP" {
        xml.text_element("UsePOPAuth", "off");
        xml.text_element("SMTPLast", "off");
    }
    xml.close();
}

/// `<SSL>` and `<Encryption>` for an encryption (see the module notes).
pub fn encryption_words(encryption: Encryption) -> (&'static str, &'static str) {
    match encryption {
        Encryption::Ssl => ("on", "SSL"),
        Encryption::Tls => ("on", "TLS"),
        Encryption::None => ("off", "None"),
    }
}

/// Autodiscover's in-band error, ErrorCode 600 "Invalid Request": the answer to a
/// well-formed request for an address whose domain the cluster does not serve (as
/// Exchange answers it, saying nothing of which domains exist). Serve it like
/// [`response`], with `200 OK`. `now_unix` gives the `Time` attribute (UTC time of
/// day); the optional `Id` (a hash of the server's name) is left out.
pub fn error_response(now_unix: u64) -> String {
    let seconds = now_unix % 86_400;
    let time = format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
    let mut xml = XmlWriter::new();
    xml.open("Autodiscover", &[("xmlns", RESPONSE_NAMESPACE)]);
    xml.open("Response", &[("xmlns", RESPONSE_NAMESPACE)]);
    xml.open("Error", &[("Time", &time)]);
    xml.text_element("ErrorCode", "600");
    xml.text_element("Message", "Invalid Request");
    xml.text_element("DebugData", "");
    xml.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::read::{Element, parse};

    fn request(address: &str, schema: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
             <Autodiscover xmlns=\"{REQUEST_NAMESPACE}\">\n\
             <Request>\n\
             <EMailAddress>{address}</EMailAddress>\n\
             <AcceptableResponseSchema>{schema}</AcceptableResponseSchema>\n\
             </Request>\n\
             </Autodiscover>\n"
        )
    }

    fn parse_text(text: &str) -> Result<AutodiscoverRequest, AutodiscoverError> {
        parse_request(text.as_bytes(), DEFAULT_MAX_REQUEST_LEN)
    }

    #[test]
    fn outlooks_request_is_read() {
        let parsed = parse_text(&request("alice@Example.com", OUTLOOK_RESPONSE_SCHEMA)).unwrap();
        assert_eq!(parsed.email_address, "alice@Example.com");
        assert_eq!(parsed.domain(), "Example.com");
    }

    #[test]
    fn variations_a_client_may_send_are_read() {
        // A prefix instead of a default namespace, a BOM, comments, white space and
        // entities inside the text, an unknown element, https schema URIs.
        let text = format!(
            "\u{feff}<?xml version=\"1.0\"?><!-- hi --><a:Autodiscover xmlns:a=\"{REQUEST_NAMESPACE}\">\
             <a:Request><a:Extra><a:EMailAddress>not this</a:EMailAddress></a:Extra>\
             <a:EMailAddress>\n  bob&#64;example.org  </a:EMailAddress>\
             <a:AcceptableResponseSchema>{}</a:AcceptableResponseSchema>\
             </a:Request></a:Autodiscover>",
            OUTLOOK_RESPONSE_SCHEMA.replace("http://", "https://")
        );
        assert_eq!(parse_text(&text).unwrap().email_address, "bob@example.org");
        let https_namespace = request("carol@example.net", OUTLOOK_RESPONSE_SCHEMA).replace(
            REQUEST_NAMESPACE,
            &REQUEST_NAMESPACE.replace("http://", "https://"),
        );
        assert_eq!(
            parse_text(&https_namespace).unwrap().email_address,
            "carol@example.net"
        );
        let cdata = request("<![CDATA[dave@example.com]]>", OUTLOOK_RESPONSE_SCHEMA);
        assert_eq!(
            parse_text(&cdata).unwrap().email_address,
            "dave@example.com"
        );
    }

    #[test]
    fn every_kind_of_bad_request_has_its_error() {
        let good = request("alice@example.com", OUTLOOK_RESPONSE_SCHEMA);
        assert_eq!(
            parse_request(good.as_bytes(), good.len() - 1),
            Err(AutodiscoverError::TooLong {
                max: good.len() - 1
            })
        );
        assert!(parse_request(good.as_bytes(), good.len()).is_ok());

        let cases: Vec<(String, AutodiscoverError)> = vec![
            ("".into(), not_xml("there is no root element")),
            ("hello".into(), not_xml("there is text outside the root element")),
            (good.replace("</Request>", "</Requests>"), AutodiscoverError::NotXml(String::new())),
            (good.replace("</Autodiscover>", ""), not_xml("the root element is not closed")),
            (format!("{good}<Autodiscover/>"), not_xml("there is content after the root element")),
            (
                good.replace("<Request>", "<!DOCTYPE x [<!ENTITY e \"e\">]><Request>"),
                AutodiscoverError::Doctype,
            ),
            (
                format!("<!DOCTYPE Autodiscover SYSTEM \"file:///etc/passwd\">{good}")
                    .replace("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n", ""),
                AutodiscoverError::Doctype,
            ),
            (good.replace("alice@", "alice&ext;@"), not_xml("it uses an undeclared entity")),
            (good.replace("alice@", "alice&#0;@"), not_xml("it has a bad character reference")),
            (good.replace("Autodiscover", "Discover"), AutodiscoverError::WrongRoot),
            (good.replace(REQUEST_NAMESPACE, "urn:other"), AutodiscoverError::WrongNamespace),
            (good.replace(&format!(" xmlns=\"{REQUEST_NAMESPACE}\""), ""), AutodiscoverError::WrongNamespace),
            (
                good.replace("<Request>", "<Request><EMailAddress>x@example.com</EMailAddress>"),
                AutodiscoverError::Duplicate("EMailAddress"),
            ),
            (
                good.replace("<EMailAddress>alice@example.com</EMailAddress>", ""),
                AutodiscoverError::MissingAddress,
            ),
            (good.replace("Request>", "Requests>"), AutodiscoverError::MissingAddress),
            (good.replace("alice@example.com", "alice"), AutodiscoverError::InvalidAddress),
            (good.replace("alice@example.com", ""), AutodiscoverError::InvalidAddress),
            (good.replace("alice@example.com", "a b@example.com"), AutodiscoverError::InvalidAddress),
            (
                good.replace("alice@example.com", "<b>alice@example.com</b>"),
                not_xml("a text field holds an element"),
            ),
            (
                good.replace(&format!("<AcceptableResponseSchema>{OUTLOOK_RESPONSE_SCHEMA}</AcceptableResponseSchema>"), ""),
                AutodiscoverError::MissingResponseSchema,
            ),
            (
                good.replace("outlook/responseschema/2006a", "mobilesync/responseschema/2006"),
                AutodiscoverError::UnsupportedResponseSchema,
            ),
            (
                format!("{}{}{}", "<a>".repeat(20), good, "</a>".repeat(20))
                    .replace("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n", ""),
                AutodiscoverError::WrongRoot,
            ),
        ];
        for (text, expected) in cases {
            let got = parse_text(&text);
            match (&got, &expected) {
                // The parser's own message is not pinned down, only its kind.
                (Err(AutodiscoverError::NotXml(_)), AutodiscoverError::NotXml(e))
                    if e.is_empty() => {}
                _ => assert_eq!(got, Err(expected), "{text}"),
            }
        }
        assert_eq!(
            parse_request(b"<Autodiscover \xff/>", 100),
            Err(not_xml("it is not UTF-8"))
        );
        let deep = format!(
            "<Autodiscover xmlns=\"{REQUEST_NAMESPACE}\">{}{}</Autodiscover>",
            "<a>".repeat(20),
            "</a>".repeat(20)
        );
        assert_eq!(
            parse_text(&deep),
            Err(not_xml("elements are nested too deeply"))
        );
    }

    #[test]
    fn error_messages_do_not_repeat_the_clients_input() {
        let hostile = request("<script>x@example.com", OUTLOOK_RESPONSE_SCHEMA)
            .replace("<script>", "&lt;script\u{7}&gt;");
        let error = parse_text(&hostile).unwrap_err();
        assert_eq!(error, AutodiscoverError::InvalidAddress);
        assert!(!error.to_string().contains("script"));
        let mismatched = format!(
            "<Autodiscover xmlns=\"{REQUEST_NAMESPACE}\"><x\u{7}\u{1b}[1m></y></Autodiscover>"
        );
        let message = parse_text(&mismatched).unwrap_err().to_string();
        assert!(
            message.chars().all(|c| c.is_ascii_graphic() || c == ' '),
            "{message}"
        );
        assert!(message.len() < 200, "{message}");
    }

    fn setting(text: &str) -> ConnectionSetting {
        text.parse().unwrap()
    }

    /// Every field of a `<Protocol>`, in order, as (name, text).
    fn protocol_fields(protocol: &Element) -> Vec<(String, String)> {
        protocol
            .children
            .iter()
            .map(|c| {
                assert!(c.children.is_empty());
                (c.name.clone(), c.text.clone())
            })
            .collect()
    }

    fn expected(
        kind: &str,
        server: &str,
        port: &str,
        ssl: &str,
        encryption: &str,
        login: &str,
    ) -> Vec<(String, String)> {
        let mut fields = vec![
            ("Type", kind),
            ("Server", server),
            ("Port", port),
            ("LoginName", login),
            ("DomainRequired", "off"),
            ("SPA", "off"),
            ("SSL", ssl),
            ("Encryption", encryption),
            ("AuthRequired", "on"),
        ];
        if kind == "SMTP" {
            fields.extend([("UsePOPAuth", "off"), ("SMTPLast", "off")]);
        }
        fields
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn the_response_lists_every_setting() {
        let settings = ClientSettings {
            imap: vec![
                setting("mail.example.com:993:SSL"),
                setting("mail.example.com:143:TLS"),
            ],
            pop3: vec![setting("[2001:db8::1]:110:none")],
            smtp: vec![setting("smtp.example.com:587:TLS")],
        };
        let login = "o'neil&co@example.com";
        let root = parse(&response(login, &settings));
        assert_eq!(root.name, "Autodiscover");
        assert_eq!(root.namespace.as_deref(), Some(RESPONSE_NAMESPACE));
        assert_eq!(root.child_names(), ["Response"]);
        let response = root.child("Response");
        assert_eq!(response.namespace.as_deref(), Some(OUTLOOK_RESPONSE_SCHEMA));
        assert_eq!(response.child_names(), ["Account"]);
        let account = response.child("Account");
        assert_eq!(account.namespace.as_deref(), Some(OUTLOOK_RESPONSE_SCHEMA));
        assert_eq!(
            account.child_names(),
            [
                "AccountType",
                "Action",
                "Protocol",
                "Protocol",
                "Protocol",
                "Protocol"
            ]
        );
        assert_eq!(account.child("AccountType").text, "email");
        assert_eq!(account.child("Action").text, "settings");
        let protocols: Vec<_> = account
            .children_named("Protocol")
            .map(protocol_fields)
            .collect();
        assert_eq!(
            protocols,
            [
                expected("IMAP", "mail.example.com", "993", "on", "SSL", login),
                expected("IMAP", "mail.example.com", "143", "on", "TLS", login),
                expected("POP3", "2001:db8::1", "110", "off", "None", login),
                expected("SMTP", "smtp.example.com", "587", "on", "TLS", login),
            ]
        );
    }

    #[test]
    fn nothing_offered_is_an_account_without_protocols() {
        let root = parse(&response("alice@example.com", &ClientSettings::default()));
        let account = root.child("Response").child("Account");
        assert_eq!(account.child_names(), ["AccountType", "Action"]);
    }

    #[test]
    fn the_error_response_is_outlooks_invalid_request() {
        // 2026-12-05 13:04:05 UTC
        let root = parse(&error_response(1_796_475_845));
        assert_eq!(root.name, "Autodiscover");
        assert_eq!(root.namespace.as_deref(), Some(RESPONSE_NAMESPACE));
        let response = root.child("Response");
        assert_eq!(response.namespace.as_deref(), Some(RESPONSE_NAMESPACE));
        assert_eq!(response.child_names(), ["Error"]);
        let error = response.child("Error");
        assert_eq!(
            error.attributes,
            [("Time".to_string(), "13:04:05".to_string())]
        );
        assert_eq!(error.child_names(), ["ErrorCode", "Message", "DebugData"]);
        assert_eq!(error.child("ErrorCode").text, "600");
        assert_eq!(error.child("Message").text, "Invalid Request");
        assert_eq!(error.child("DebugData").text, "");
    }
}
