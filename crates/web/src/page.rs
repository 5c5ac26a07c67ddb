//! The "Settings for POP or IMAP access" page, as Outlook Web App shows it: after
//! signing in, a user sees for POP3, IMAP4 and SMTP the server name, port and
//! encryption method to type into a mail program, for inside the network and for
//! outside it, and which of the protocols the account may use.
//!
//! Pages are rendered on the server with maud (templates checked at compile time,
//! every value HTML-escaped). There is no JavaScript and nothing is loaded from
//! elsewhere: the small stylesheet is inline, and [`content_security_policy`] allows
//! exactly it. Forms POST with a CSRF token (see [`crate::token`]).
//!
//! Routes the server wires (GET shows, POST acts):
//!
//! ```text
//! GET  /settings            settings(view, csrf)  when signed in, else redirect to sign-in
//! GET  /settings/sign-in    sign_in(csrf, None, "")
//! POST /settings/sign-in    address, password, csrf -> set session cookie, 303 to /settings
//!                           or sign_in(csrf, Some("…"), address) with 401
//! POST /settings/sign-out   csrf -> clear session cookie, 303 to /settings/sign-in
//! ```
//!
//! For browser tests, every value cell carries `data-protocol` (`pop3`, `imap`,
//! `smtp`), `data-side` (`internal`, `external`), `data-index` (0 = preferred) and
//! `data-field` (`host`, `port`, `encryption`), and an `id` made of the same parts
//! (`imap-external-0-port`). The encryption cell's text is `SSL`, `TLS` or `none`.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use portico_cluster::{ClientProtocol, ConnectionSetting, Encryption};

use crate::settings::ClientSettings;

/// Where the settings page is served.
pub const SETTINGS_PATH: &str = "/settings";
/// Where the sign-in form is shown (GET) and posted (POST).
pub const SIGN_IN_PATH: &str = "/settings/sign-in";
/// Where the sign-out form posts.
pub const SIGN_OUT_PATH: &str = "/settings/sign-out";
/// Form field: the mail address signing in.
pub const ADDRESS_FIELD: &str = "address";
/// Form field: the password.
pub const PASSWORD_FIELD: &str = "password";
/// Form field (hidden): the CSRF token.
pub const CSRF_FIELD: &str = "csrf";

/// The page title, also its heading.
pub const TITLE: &str = "Settings for POP or IMAP access";

/// The whole stylesheet, inline in every page. Colours keep a contrast of at least
/// 7:1 against their background (WCAG AAA for normal text).
pub const STYLE: &str = "\
:root{color-scheme:light;font-family:system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;\
line-height:1.5;color:#1b1b1b;background:#fff}\
body{margin:0}\
main{max-width:52rem;margin:0 auto;padding:1rem}\
h1{font-size:1.6rem;margin:.5rem 0 1rem}\
h2{font-size:1.25rem;margin:2rem 0 .5rem}\
table{border-collapse:collapse;width:100%;margin:0 0 1.5rem}\
caption{text-align:left;font-weight:700;font-size:1.1rem;padding:.25rem 0}\
th,td{border:1px solid #6b6b6b;padding:.4rem .6rem;text-align:left;vertical-align:top;\
overflow-wrap:anywhere}\
thead th{background:#ececec}\
td[data-field=port]{font-variant-numeric:tabular-nums}\
.note{color:#404040}\
.error{color:#8a0010;border:2px solid #8a0010;padding:.5rem .75rem}\
label{display:block;font-weight:600;margin:.75rem 0 .25rem}\
input{font:inherit;width:100%;max-width:24rem;box-sizing:border-box;padding:.45rem;\
border:1px solid #4a4a4a;border-radius:3px}\
button{font:inherit;margin-top:1rem;padding:.5rem 1.25rem;color:#fff;background:#0a4391;\
border:1px solid #0a4391;border-radius:3px;cursor:pointer}\
button:hover{background:#06306a}\
:focus-visible{outline:3px solid #b35c00;outline-offset:2px}\
dt{font-weight:700}dd{margin:0 0 .5rem 1rem}";

/// The `Content-Security-Policy` header for these pages: nothing may load, run or
/// frame them; the inline stylesheet is allowed by its hash; forms post only here.
pub fn content_security_policy() -> String {
    use base64::Engine;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, STYLE.as_bytes());
    let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    )
}

/// What the settings page shows one signed-in user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsView {
    /// The signed-in address (also the user name for every protocol).
    pub address: String,
    /// What clients inside the network are told.
    pub internal: ClientSettings,
    /// What clients outside the network are told.
    pub external: ClientSettings,
    /// Whether the account may use IMAP4.
    pub imap_enabled: bool,
    /// Whether the account may use POP3.
    pub pop3_enabled: bool,
    /// Whether the account may submit mail over SMTP.
    pub smtp_enabled: bool,
    /// The site that holds the mailbox.
    pub home_site: String,
    /// The node that holds the mailbox.
    pub home_node: String,
}

/// The order and names the page uses, as Outlook Web App does.
const PROTOCOLS: [(ClientProtocol, &str, &str); 3] = [
    (ClientProtocol::Pop3, "pop3", "POP3"),
    (ClientProtocol::Imap, "imap", "IMAP4"),
    (ClientProtocol::Smtp, "smtp", "SMTP"),
];

/// How the page writes an encryption method (Exchange's words).
pub fn encryption_label(encryption: Encryption) -> &'static str {
    match encryption {
        Encryption::Ssl => "SSL",
        Encryption::Tls => "TLS",
        Encryption::None => "none",
    }
}

fn layout(body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (TITLE) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                main { (body) }
            }
        }
    }
    .into_string()
}

/// The sign-in form. `csrf` is the token bound to the pre-session cookie; `error`
/// (for example "The address or password is not right.") is shown above the form;
/// `address` refills the address field after a failed attempt.
pub fn sign_in(csrf: &str, error: Option<&str>, address: &str) -> String {
    let described_by = error.map(|_| "sign-in-error");
    layout(html! {
        h1 { (TITLE) }
        p { "Sign in to see the server names, ports and encryption your mail program needs." }
        @if let Some(error) = error {
            p #sign-in-error .error role="alert" { (error) }
        }
        form method="post" action=(SIGN_IN_PATH) {
            input type="hidden" name=(CSRF_FIELD) value=(csrf);
            label for="address" { "Email address" }
            input #address name=(ADDRESS_FIELD) type="text" inputmode="email"
                autocomplete="username" autocapitalize="none" spellcheck="false"
                required value=(address) aria-describedby=[described_by]
                autofocus[address.is_empty()];
            label for="password" { "Password" }
            input #password name=(PASSWORD_FIELD) type="password"
                autocomplete="current-password" required aria-describedby=[described_by]
                autofocus[!address.is_empty()];
            button type="submit" { "Sign in" }
        }
    })
}

/// The settings page for a signed-in user; `csrf` is the token bound to the session,
/// for the sign-out form.
pub fn settings(view: &SettingsView, csrf: &str) -> String {
    layout(html! {
        h1 { (TITLE) }
        p {
            "Signed in as " strong #account-address { (view.address) } "."
        }
        p .note {
            "For every protocol, your user name is your full email address and your "
            "password is the one you signed in with."
        }
        h2 #account-heading { "Your account" }
        table #account-protocols {
            caption { "Protocols your account can use" }
            thead { tr { th scope="col" { "Protocol" } th scope="col" { "Allowed" } } }
            tbody {
                @for (protocol, key, name) in PROTOCOLS {
                    @let enabled = enabled(view, protocol);
                    tr {
                        th scope="row" { (name) }
                        td id={ (key) "-enabled" } data-protocol=(key) data-field="enabled"
                            data-value=(if enabled { "yes" } else { "no" }) {
                            (if enabled { "Yes" } else { "No" })
                        }
                    }
                }
            }
        }
        p {
            "Your mailbox is kept on node "
            span #home-node data-field="home-node" { (view.home_node) }
            " in site "
            span #home-site data-field="home-site" { (view.home_site) }
            "."
        }
        h2 #servers-heading { "Server settings" }
        @for (protocol, key, name) in PROTOCOLS {
            table id={ (key) "-settings" } data-protocol=(key) {
                caption {
                    (name) " settings"
                    @if !enabled(view, protocol) {
                        " (your account cannot use " (name) ")"
                    }
                }
                thead {
                    tr {
                        th scope="col" { "Where you connect from" }
                        th scope="col" { "Server name" }
                        th scope="col" { "Port" }
                        th scope="col" { "Encryption method" }
                    }
                }
                tbody {
                    (side_rows(key, "internal", "Inside the network",
                        view.internal.for_protocol(protocol)))
                    (side_rows(key, "external", "Outside the network",
                        view.external.for_protocol(protocol)))
                }
            }
        }
        h2 { "Encryption methods" }
        dl {
            dt { "SSL" }
            dd { "The connection is encrypted from the start (implicit TLS)." }
            dt { "TLS" }
            dd { "The connection starts unencrypted and is switched to TLS with STARTTLS before you sign in." }
            dt { "none" }
            dd { "The connection is not encrypted." }
        }
        p .note {
            "Where more than one server is listed, use the first; the others are alternatives."
        }
        form method="post" action=(SIGN_OUT_PATH) {
            input type="hidden" name=(CSRF_FIELD) value=(csrf);
            button type="submit" { "Sign out" }
        }
    })
}

fn enabled(view: &SettingsView, protocol: ClientProtocol) -> bool {
    match protocol {
        ClientProtocol::Imap => view.imap_enabled,
        ClientProtocol::Pop3 => view.pop3_enabled,
        ClientProtocol::Smtp => view.smtp_enabled,
    }
}

fn side_rows(key: &str, side: &str, label: &str, settings: &[ConnectionSetting]) -> Markup {
    html! {
        @if settings.is_empty() {
            tr data-side=(side) {
                th scope="row" { (label) }
                td colspan="3" id={ (key) "-" (side) "-none" } data-protocol=(key)
                    data-side=(side) data-field="none" {
                    "Not offered"
                }
            }
        }
        @for (index, setting) in settings.iter().enumerate() {
            tr data-side=(side) data-index=(index) {
                th scope="row" {
                    (label)
                    @if index > 0 { ", alternative " (index) }
                }
                td id={ (key) "-" (side) "-" (index) "-host" } data-protocol=(key)
                    data-side=(side) data-index=(index) data-field="host" { (setting.host) }
                td id={ (key) "-" (side) "-" (index) "-port" } data-protocol=(key)
                    data-side=(side) data-index=(index) data-field="port" { (setting.port) }
                td id={ (key) "-" (side) "-" (index) "-encryption" } data-protocol=(key)
                    data-side=(side) data-index=(index) data-field="encryption" {
                    (encryption_label(setting.encryption))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::read::{Element, parse_html};

    fn setting(text: &str) -> ConnectionSetting {
        text.parse().unwrap()
    }

    fn view() -> SettingsView {
        SettingsView {
            address: "alice<script>@example.com".into(),
            internal: ClientSettings {
                imap: vec![setting("imap.corp.example.com:143:TLS")],
                pop3: vec![setting("10.0.0.5:110:none")],
                smtp: vec![setting("smtp.corp.example.com:587:TLS")],
            },
            external: ClientSettings {
                imap: vec![
                    setting("mail.example.com:993:SSL"),
                    setting("mail.example.com:143:TLS"),
                ],
                pop3: Vec::new(),
                smtp: vec![setting("mail.example.com:465:SSL")],
            },
            imap_enabled: true,
            pop3_enabled: false,
            smtp_enabled: true,
            home_site: "dublin & co".into(),
            home_node: "d1\"".into(),
        }
    }

    /// Every element of the tree, depth first.
    fn all(root: &Element) -> Vec<&Element> {
        let mut out = vec![root];
        for child in &root.children {
            out.extend(all(child));
        }
        out
    }

    fn by_id<'a>(root: &'a Element, id: &str) -> &'a Element {
        let found: Vec<_> = all(root)
            .into_iter()
            .filter(|e| e.attribute("id") == Some(id))
            .collect();
        assert_eq!(found.len(), 1, "id {id}");
        found[0]
    }

    /// The visible text of an element and its descendants.
    fn text(element: &Element) -> String {
        let mut out = element.text.clone();
        for child in &element.children {
            out.push_str(&text(child));
        }
        out
    }

    fn head_checks(root: &Element) {
        assert_eq!(root.name, "html");
        assert_eq!(root.attribute("lang"), Some("en"));
        let head = root.child("head");
        let metas: Vec<_> = head.children_named("meta").collect();
        assert_eq!(metas[0].attribute("charset"), Some("utf-8"));
        assert_eq!(metas[1].attribute("name"), Some("viewport"));
        assert_eq!(
            metas[1].attribute("content"),
            Some("width=device-width, initial-scale=1")
        );
        assert_eq!(head.child("title").text, TITLE);
        assert_eq!(head.child("style").text, STYLE);
        assert!(all(root).iter().all(|e| e.name != "script"));
    }

    #[test]
    fn the_settings_page_shows_every_value_with_its_data_attributes() {
        let html = settings(&view(), "csrf-token-1");
        assert!(html.starts_with("<!DOCTYPE html>"));
        let root = parse_html(&html);
        head_checks(&root);
        let main = root.child("body").child("main");
        assert_eq!(main.child("h1").text, TITLE);
        assert_eq!(
            by_id(&root, "account-address").text,
            "alice<script>@example.com"
        );
        assert_eq!(by_id(&root, "home-node").text, "d1\"");
        assert_eq!(by_id(&root, "home-site").text, "dublin & co");

        for (key, value, label) in [
            ("pop3", "no", "No"),
            ("imap", "yes", "Yes"),
            ("smtp", "yes", "Yes"),
        ] {
            let cell = by_id(&root, &format!("{key}-enabled"));
            assert_eq!(cell.attribute("data-protocol"), Some(key));
            assert_eq!(cell.attribute("data-field"), Some("enabled"));
            assert_eq!(cell.attribute("data-value"), Some(value));
            assert_eq!(cell.text, label);
        }

        // (protocol, side, index, host, port, encryption)
        let expected = [
            ("imap", "internal", 0, "imap.corp.example.com", "143", "TLS"),
            ("imap", "external", 0, "mail.example.com", "993", "SSL"),
            ("imap", "external", 1, "mail.example.com", "143", "TLS"),
            ("pop3", "internal", 0, "10.0.0.5", "110", "none"),
            ("smtp", "internal", 0, "smtp.corp.example.com", "587", "TLS"),
            ("smtp", "external", 0, "mail.example.com", "465", "SSL"),
        ];
        for (key, side, index, host, port, encryption) in expected {
            for (field, value) in [("host", host), ("port", port), ("encryption", encryption)] {
                let cell = by_id(&root, &format!("{key}-{side}-{index}-{field}"));
                assert_eq!(cell.name, "td");
                assert_eq!(cell.attribute("data-protocol"), Some(key));
                assert_eq!(cell.attribute("data-side"), Some(side));
                assert_eq!(
                    cell.attribute("data-index"),
                    Some(index.to_string().as_str())
                );
                assert_eq!(cell.attribute("data-field"), Some(field));
                assert_eq!(cell.text, value, "{key} {side} {index} {field}");
            }
        }
        let value_cells = all(&root)
            .into_iter()
            .filter(|e| e.name == "td" && e.attribute("data-side").is_some())
            .count();
        assert_eq!(value_cells, expected.len() * 3 + 1);
        let none = by_id(&root, "pop3-external-none");
        assert_eq!(
            (none.attribute("data-field"), none.text.as_str()),
            (Some("none"), "Not offered")
        );

        // Tables are captioned, headed by scoped header cells, in Outlook's order.
        let tables: Vec<_> = all(&root)
            .into_iter()
            .filter(|e| e.name == "table")
            .collect();
        let captions: Vec<_> = tables.iter().map(|t| text(t.child("caption"))).collect();
        assert_eq!(
            captions,
            [
                "Protocols your account can use",
                "POP3 settings (your account cannot use POP3)",
                "IMAP4 settings",
                "SMTP settings",
            ]
        );
        for table in &tables {
            for th in all(table).into_iter().filter(|e| e.name == "th") {
                assert!(
                    matches!(th.attribute("scope"), Some("col" | "row")),
                    "{th:?}"
                );
            }
        }
        let imap = by_id(&root, "imap-settings");
        let rows: Vec<_> = imap
            .child("tbody")
            .children_named("tr")
            .map(|r| text(r.child("th")))
            .collect();
        assert_eq!(
            rows,
            [
                "Inside the network",
                "Outside the network",
                "Outside the network, alternative 1"
            ]
        );

        // Sign-out posts the session's CSRF token.
        let forms: Vec<_> = all(&root)
            .into_iter()
            .filter(|e| e.name == "form")
            .collect();
        assert_eq!(forms.len(), 1);
        assert_eq!(forms[0].attribute("method"), Some("post"));
        assert_eq!(forms[0].attribute("action"), Some(SIGN_OUT_PATH));
        let hidden = forms[0].child("input");
        assert_eq!(hidden.attribute("type"), Some("hidden"));
        assert_eq!(hidden.attribute("name"), Some(CSRF_FIELD));
        assert_eq!(hidden.attribute("value"), Some("csrf-token-1"));
        assert_eq!(forms[0].child("button").text, "Sign out");
    }

    #[test]
    fn values_are_escaped() {
        let html = settings(&view(), "\"><script>alert(1)</script>");
        assert!(!html.contains("<script>"));
        let root = parse_html(&html);
        let form = all(&root).into_iter().find(|e| e.name == "form").unwrap();
        assert_eq!(
            form.child("input").attribute("value"),
            Some("\"><script>alert(1)</script>")
        );
    }

    #[test]
    fn the_sign_in_form_has_labelled_fields_and_the_token() {
        let html = sign_in("tok", None, "");
        let root = parse_html(&html);
        head_checks(&root);
        let form = root.child("body").child("main").child("form");
        assert_eq!(form.attribute("method"), Some("post"));
        assert_eq!(form.attribute("action"), Some(SIGN_IN_PATH));
        let inputs: Vec<_> = form.children_named("input").collect();
        assert_eq!(inputs.len(), 3);
        assert_eq!(inputs[0].attribute("type"), Some("hidden"));
        assert_eq!(inputs[0].attribute("name"), Some("csrf"));
        assert_eq!(inputs[0].attribute("value"), Some("tok"));
        assert_eq!(inputs[1].attribute("name"), Some("address"));
        assert_eq!(inputs[1].attribute("value"), Some(""));
        assert_eq!(inputs[1].attribute("autocomplete"), Some("username"));
        assert_eq!(inputs[1].attribute("autofocus"), Some(""));
        assert_eq!(inputs[2].attribute("name"), Some("password"));
        assert_eq!(inputs[2].attribute("type"), Some("password"));
        assert_eq!(inputs[2].attribute("autofocus"), None);
        let labels: Vec<_> = form
            .children_named("label")
            .map(|l| l.attribute("for").unwrap())
            .collect();
        assert_eq!(labels, ["address", "password"]);
        assert_eq!(inputs[1].attribute("id"), Some("address"));
        assert_eq!(inputs[2].attribute("id"), Some("password"));
        assert_eq!(form.child("button").text, "Sign in");
        assert!(
            all(&root)
                .iter()
                .all(|e| e.attribute("role") != Some("alert"))
        );
    }

    #[test]
    fn a_failed_sign_in_shows_the_error_and_keeps_the_address() {
        let html = sign_in(
            "tok",
            Some("The address or password <is> not right."),
            "bob\"@example.com",
        );
        let root = parse_html(&html);
        let error = by_id(&root, "sign-in-error");
        assert_eq!(error.attribute("role"), Some("alert"));
        assert_eq!(error.text, "The address or password <is> not right.");
        let address = by_id(&root, "address");
        assert_eq!(address.attribute("value"), Some("bob\"@example.com"));
        assert_eq!(address.attribute("aria-describedby"), Some("sign-in-error"));
        assert_eq!(address.attribute("autofocus"), None);
        assert_eq!(by_id(&root, "password").attribute("autofocus"), Some(""));
    }

    #[test]
    fn the_policy_allows_exactly_the_inline_style() {
        let policy = content_security_policy();
        assert!(policy.starts_with("default-src 'none'; style-src 'sha256-"));
        // SHA-256 is 32 bytes: 44 base64 characters with padding.
        let hash = policy
            .split("'sha256-")
            .nth(1)
            .unwrap()
            .split('\'')
            .next()
            .unwrap();
        assert_eq!(hash.len(), 44);
        assert!(policy.contains("form-action 'self'"));
        assert!(policy.contains("frame-ancestors 'none'"));
    }
}
