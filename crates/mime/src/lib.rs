//! MIME indexing for Portico's IMAP server.
//!
//! Owns what IMAP needs to know about a message's structure: ENVELOPE and
//! BODYSTRUCTURE, section extraction for `BODY[...]` and `BINARY[...]`, and
//! decoded text for SEARCH, and the preview text of RFC 8970.
//!
//! Why a summary: parsing MIME is the expensive part of a FETCH, and clients
//! ask for ENVELOPE and BODYSTRUCTURE of thousands of messages at a time. So
//! [`summarize`] runs once, when a message is stored; the resulting
//! [`MessageSummary`] (serde, a few hundred bytes) is kept beside the message
//! and rendered later without reading the message again. Sections are cut
//! from the raw bytes by the offsets it holds.
//!
//! ```text
//!   append:  raw ──summarize──► MessageSummary ──serde──► store
//!   FETCH:   MessageSummary ──envelope()/bodystructure()──► IMAP bytes
//!            raw + MessageSummary ──section()/binary_section()──► bytes
//!   SEARCH:  raw ──header_values()/body_text()/sent_date()──► decoded text
//!   PREVIEW: raw + MessageSummary ──preview()──► ≤ 200 characters of text
//! ```
//!
//! It depends on mail-parser for the part tree and decoding, and must never
//! depend on the store, the protocol crates or any I/O: it takes bytes and
//! returns bytes. Every entry point accepts any input without panicking.

mod address;
mod decode;
mod header;
mod params;
mod preview;
mod render;
mod search;
mod section;
mod summary;
mod wire;

pub use address::Address;
pub use header::header_end;
pub use params::Param;
pub use preview::{PREVIEW_CHARS, preview};
pub use search::{
    SearchFields, all_header_values, body_text, decode_header_text, header_search_text,
    header_values, parse_date, search_fields, sent_date,
};
pub use section::{
    KEPT_HEADER_FIELDS, SectionPart, UnknownCte, binary_section, header_fields, kept_header_covers,
    kept_header_lines, section, section_range,
};
pub use summary::{
    Content, Disposition, Encapsulated, Envelope, MessageSummary, Part, summarize,
    summarize_with_body_text,
};
