//! Feeds arbitrary bytes to `summarize`, renders ENVELOPE and BODYSTRUCTURE in
//! every mode, fetches every section the summary names and makes the preview:
//! none of it may panic, every part must lie inside its parent, and the preview
//! must be short.
//!
//! Run with `cargo fuzz run summarize` from `crates/mime`; seed it with the
//! corpus: `cargo fuzz run summarize ../../tests/corpus`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portico_mime::{Content, Part, SectionPart, binary_section, section, summarize};

fn walk(raw: &[u8], part: &Part, lo: usize, hi: usize, path: &mut Vec<u32>, out: &mut Vec<Vec<u32>>) {
    assert!(lo <= part.header_start && part.header_start <= part.body_start);
    assert!(part.body_start <= part.body_end && part.body_end <= hi);
    match &part.content {
        Content::Multipart(children) => {
            for (i, child) in children.iter().enumerate() {
                path.push(i as u32 + 1);
                out.push(path.clone());
                walk(raw, child, part.body_start, part.body_end, path, out);
                path.pop();
            }
        }
        Content::Message { message, .. } => {
            walk(raw, &message.root, part.body_start, part.body_end, path, out)
        }
        _ => {}
    }
}

fuzz_target!(
    init: {
        // summarize catches panics inside mail-parser on purpose (see its comment);
        // libfuzzer-sys's hook would abort on those caught ones too. Panics that escape
        // still abort: libfuzzer-sys catches them around this closure.
        std::panic::set_hook(Box::new(|_| {}));
    },
    |data: &[u8]| {
    let s = summarize(data);
    for utf8 in [false, true] {
        let _ = s.envelope(utf8);
        let _ = s.bodystructure(true, utf8);
        let _ = s.bodystructure(false, utf8);
    }
    let mut paths = vec![vec![], vec![1], vec![1, 1]];
    walk(data, s.root(), 0, data.len(), &mut Vec::new(), &mut paths);
    for path in &paths {
        for kind in [
            SectionPart::Full,
            SectionPart::Header,
            SectionPart::Text,
            SectionPart::Mime,
            SectionPart::HeaderFields(vec!["subject".into()]),
            SectionPart::HeaderFieldsNot(vec!["subject".into()]),
        ] {
            let _ = section(data, &s, path, &kind);
        }
        let _ = binary_section(data, &s, path);
    }
    let _ = portico_mime::header_values(data, "from");
    let _ = portico_mime::sent_date(data);
    let _ = portico_mime::body_text(data);
    let preview = portico_mime::preview(data, &s);
    assert!(preview.chars().count() <= portico_mime::PREVIEW_CHARS);
    }
);
