//! A small XML writer for the documents this crate answers with.
//!
//! It writes into a `String`, so it cannot fail, and it escapes every text and
//! attribute value with quick-xml's escaper. Elements are closed in order from a stack,
//! so a document is well formed whatever the values. Characters XML 1.0 forbids even
//! escaped (most C0 controls) are written as U+FFFD: no caller passes them, since
//! addresses and host names are checked first, but a document must never become
//! unparseable because one slipped through.

use std::borrow::Cow;

use quick_xml::escape::escape;

pub(crate) struct XmlWriter {
    out: String,
    open: Vec<&'static str>,
}

impl XmlWriter {
    /// A document that starts with the XML declaration.
    pub(crate) fn new() -> XmlWriter {
        XmlWriter {
            out: String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"),
            open: Vec::new(),
        }
    }

    fn indent(&mut self) {
        for _ in 0..self.open.len() {
            self.out.push_str("  ");
        }
    }

    /// `<name attr="value" …>`; children follow until [`XmlWriter::close`].
    pub(crate) fn open(&mut self, name: &'static str, attributes: &[(&str, &str)]) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        for (key, value) in attributes {
            self.out.push(' ');
            self.out.push_str(key);
            self.out.push_str("=\"");
            self.out.push_str(&escaped(value));
            self.out.push('"');
        }
        self.out.push_str(">\n");
        self.open.push(name);
    }

    /// Closes the innermost open element.
    pub(crate) fn close(&mut self) {
        if let Some(name) = self.open.pop() {
            self.indent();
            self.out.push_str("</");
            self.out.push_str(name);
            self.out.push_str(">\n");
        }
    }

    /// `<name>text</name>`, or `<name/>` when `text` is empty.
    pub(crate) fn text_element(&mut self, name: &'static str, text: &str) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        if text.is_empty() {
            self.out.push_str("/>\n");
            return;
        }
        self.out.push('>');
        self.out.push_str(&escaped(text));
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }

    /// The document, with every element still open closed.
    pub(crate) fn finish(mut self) -> String {
        while !self.open.is_empty() {
            self.close();
        }
        self.out
    }
}

/// `text` escaped for XML content or a double-quoted attribute.
fn escaped(text: &str) -> Cow<'_, str> {
    if text.chars().all(allowed_in_xml) {
        escape(text)
    } else {
        let cleaned: String = text
            .chars()
            .map(|c| if allowed_in_xml(c) { c } else { '\u{fffd}' })
            .collect();
        Cow::Owned(escape(cleaned.as_str()).into_owned())
    }
}

/// XML 1.0 `Char` (§2.2); Rust's `char` already excludes surrogates.
fn allowed_in_xml(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}')
        || c >= '\u{10000}'
}

#[cfg(test)]
pub(crate) mod read {
    //! A test-only reader: the documents parsed back into a tree with quick-xml, so
    //! tests check structure and values rather than matching strings.

    use quick_xml::XmlVersion;
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    use quick_xml::reader::NsReader;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct Element {
        pub namespace: Option<String>,
        pub name: String,
        pub attributes: Vec<(String, String)>,
        pub children: Vec<Element>,
        pub text: String,
    }

    impl Element {
        pub(crate) fn attribute(&self, key: &str) -> Option<&str> {
            self.attributes
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        }

        pub(crate) fn children_named<'a>(
            &'a self,
            name: &'a str,
        ) -> impl Iterator<Item = &'a Element> + 'a {
            self.children.iter().filter(move |c| c.name == name)
        }

        /// The only child called `name`; panics when there is none or several.
        pub(crate) fn child<'a>(&'a self, name: &'a str) -> &'a Element {
            let mut found = self.children_named(name);
            let first = found
                .next()
                .unwrap_or_else(|| panic!("<{}> has no <{name}>", self.name));
            assert!(
                found.next().is_none(),
                "<{}> has several <{name}>",
                self.name
            );
            first
        }

        /// The names of the children, in order.
        pub(crate) fn child_names(&self) -> Vec<&str> {
            self.children.iter().map(|c| c.name.as_str()).collect()
        }
    }

    /// Parses `document` into its root element, checking it is well formed.
    pub(crate) fn parse(document: &str) -> Element {
        parse_with(document, false)
    }

    /// Parses an HTML page the way [`parse`] does an XML document, knowing HTML's
    /// void elements (`<meta>`, `<input>` have no end tag), attributes without a value
    /// and the `<!DOCTYPE html>` line.
    pub(crate) fn parse_html(document: &str) -> Element {
        parse_with(document, true)
    }

    const VOID_ELEMENTS: [&str; 6] = ["meta", "input", "br", "hr", "img", "link"];

    fn parse_with(document: &str, html: bool) -> Element {
        // Text is not trimmed by the reader: an entity splits text into several
        // events, and trimming each would eat the spaces around it.
        let mut reader = NsReader::from_str(document);
        reader.config_mut().expand_empty_elements = true;
        // Void elements have no end tag, so the reader cannot pair names; the stack
        // below does.
        reader.config_mut().check_end_names = !html;
        let mut stack: Vec<Element> = Vec::new();
        let mut root = None;
        loop {
            let (namespace, event) = reader.read_resolved_event().unwrap();
            let namespace = match namespace {
                ResolveResult::Bound(ns) => Some(ns.0.to_string()),
                _ => None,
            };
            match event {
                Event::Start(start) => {
                    let attributes = if html {
                        start.html_attributes()
                    } else {
                        start.attributes()
                    };
                    let attributes = attributes
                        .map(|a| {
                            let a = a.unwrap();
                            (
                                a.key.0.to_string(),
                                a.normalized_value(XmlVersion::Implicit1_0)
                                    .unwrap()
                                    .into_owned(),
                            )
                        })
                        .collect();
                    let element = Element {
                        namespace,
                        name: start.local_name().as_ref().to_string(),
                        attributes,
                        children: Vec::new(),
                        text: String::new(),
                    };
                    if html && VOID_ELEMENTS.contains(&element.name.as_str()) {
                        stack.last_mut().unwrap().children.push(element);
                    } else {
                        stack.push(element);
                    }
                }
                Event::End(end) => {
                    let mut done = stack.pop().unwrap();
                    assert_eq!(end.local_name().as_ref(), done.name, "mismatched end");
                    // HTML mixes text and elements (`<p>Signed in as <strong>`); the
                    // documents written here never do.
                    if !html && !done.children.is_empty() {
                        assert!(
                            done.text.trim().is_empty(),
                            "mixed content in <{}>",
                            done.name
                        );
                        done.text.clear();
                    }
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(done),
                        None => {
                            assert!(root.is_none(), "two root elements");
                            root = Some(done);
                        }
                    }
                }
                Event::Text(text) => match stack.last_mut() {
                    Some(element) => element.text.push_str(&text.xml10_content()),
                    None => assert!(text.xml10_content().trim().is_empty()),
                },
                Event::GeneralRef(reference) => {
                    let text = match reference.resolve_char_ref().unwrap() {
                        Some(c) => c.to_string(),
                        None => quick_xml::escape::resolve_xml_entity(&reference)
                            .unwrap()
                            .to_string(),
                    };
                    stack.last_mut().unwrap().text.push_str(&text);
                }
                Event::Eof => break,
                Event::Decl(_) => {}
                Event::DocType(doctype) if html => assert_eq!(&*doctype.xml10_content(), "html"),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(stack.is_empty());
        root.expect("no root element")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_the_tree_reads_back() {
        let mut writer = XmlWriter::new();
        writer.open("root", &[("id", "a\"b<c>&'d")]);
        writer.text_element("x", "1 < 2 && \"3\" > '0'");
        writer.text_element("empty", "");
        writer.text_element("bad", "nul\u{0}bell\u{7}ok");
        let document = writer.finish();
        let root = read::parse(&document);
        assert_eq!(root.name, "root");
        assert_eq!(root.attribute("id"), Some("a\"b<c>&'d"));
        assert_eq!(root.child_names(), ["x", "empty", "bad"]);
        assert_eq!(root.child("x").text, "1 < 2 && \"3\" > '0'");
        assert_eq!(root.child("empty").text, "");
        assert_eq!(root.child("bad").text, "nul\u{fffd}bell\u{fffd}ok");
    }
}
