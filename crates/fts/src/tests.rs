use super::*;

/// The tests' fold. The index folds nothing itself: any fold serves, as long as texts
/// and needles share it.
fn fold(s: &str) -> String {
    s.to_lowercase()
}

fn text(body: &str, header: &str) -> Option<MessageText> {
    Some(MessageText {
        body: fold(body),
        header: fold(header),
        fields: Default::default(),
    })
}

/// The candidates the index names for `needle` in `folder`, which it must narrow.
fn uids(index: &TextIndex, folder: u64, field: TextField, needle: &str) -> Vec<u32> {
    index
        .candidates(folder, field, &fold(needle))
        .expect("query")
        .expect("narrowed")
        .uids
}

fn index(dir: &Path) -> TextIndex {
    TextIndex::open(dir, 20_000_000).expect("open index")
}

/// A tiny deterministic generator, so failures repeat.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % below.max(1)
    }
}

#[test]
fn candidates_cover_every_substring_and_narrow_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = index(dir.path());
    let bodies = [
        "Hello, world! The quarterly report is attached.",
        "Grüße aus Köln — café au lait, Zażółć gęślą jaźń",
        "東京で会いましょう。 Meeting in Tokyo",
        "Numbers: w1000. w1001. w100.",
        "",
    ];
    let messages = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| IndexedText {
            uid: i as u32 + 1,
            text: text(body, &format!("Subject: message {i}")),
        })
        .collect();
    index.add(7, messages).expect("add");
    index
        .set_mark(
            7,
            FolderMark {
                next_uid: 6,
                expunge_modseq: 0,
            },
        )
        .expect("mark");
    index.commit().expect("commit");

    let mut rng = Lcg(42);
    for _ in 0..2000 {
        let body = bodies[rng.next(bodies.len())];
        let chars: Vec<char> = body.chars().collect();
        if chars.len() < 3 {
            continue;
        }
        let start = rng.next(chars.len() - 2);
        let len = 3 + rng.next(chars.len() - start - 2);
        let needle: String = chars[start..start + len].iter().collect();
        // Upper-case the needle half the time: the index must not care.
        let needle = if rng.next(2) == 0 {
            needle.to_uppercase()
        } else {
            needle
        };
        let found = index
            .candidates(7, TextField::Body, &fold(&needle))
            .expect("query")
            .expect("narrowed");
        assert_eq!(found.indexed_below, 6);
        for (i, body) in bodies.iter().enumerate() {
            if fold(body).contains(&fold(&needle)) {
                assert!(
                    !found.excludes(i as u32 + 1),
                    "{needle:?} in message {}",
                    i + 1
                );
            }
        }
    }
    let found = index
        .candidates(7, TextField::Body, &fold("W1000."))
        .unwrap()
        .unwrap();
    assert_eq!(found.uids, vec![4]);
    // The index folds nothing: an unfolded needle finds only text indexed as it is.
    let found = index
        .candidates(7, TextField::Body, "HELLO")
        .unwrap()
        .unwrap();
    assert_eq!(found.uids, Vec::<u32>::new());
    let found = index
        .candidates(7, TextField::Body, "köln")
        .unwrap()
        .unwrap();
    assert_eq!(found.uids, vec![2]);
    // Header text only for TEXT.
    assert_eq!(
        uids(&index, 7, TextField::Body, "message 3"),
        Vec::<u32>::new()
    );
    assert_eq!(uids(&index, 7, TextField::Text, "message 3"), vec![4]);
    // Short needles and unknown folders are not narrowed.
    assert_eq!(index.candidates(7, TextField::Body, "he").unwrap(), None);
    assert_eq!(index.candidates(8, TextField::Body, "hello").unwrap(), None);
    // Above the mark the index knows nothing.
    let found = index
        .candidates(7, TextField::Body, "zzzz")
        .unwrap()
        .unwrap();
    assert!(found.excludes(5) && !found.excludes(6) && !found.excludes(100));
}

#[test]
fn unread_messages_are_candidates_and_marks_survive_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let index = index(dir.path());
        index
            .add(
                3,
                vec![
                    IndexedText {
                        uid: 1,
                        text: text("alpha beta", ""),
                    },
                    IndexedText { uid: 2, text: None },
                    IndexedText {
                        uid: 3,
                        text: text("gamma delta", ""),
                    },
                ],
            )
            .unwrap();
        index
            .set_mark(
                3,
                FolderMark {
                    next_uid: 4,
                    expunge_modseq: 9,
                },
            )
            .unwrap();
        index.commit().unwrap();
        index.remove(3, &[3]).unwrap();
        // Not committed: gone at reopening.
        index
            .add(
                3,
                vec![IndexedText {
                    uid: 4,
                    text: text("gamma", ""),
                }],
            )
            .unwrap();
        assert_eq!(uids(&index, 3, TextField::Body, "gamma"), vec![2, 3]);
    }
    let index = index(dir.path());
    let marks = index.marks().unwrap();
    assert_eq!(
        marks.get(&3),
        Some(&FolderMark {
            next_uid: 4,
            expunge_modseq: 9
        })
    );
    assert_eq!(uids(&index, 3, TextField::Body, "alpha"), vec![1, 2]);
    assert_eq!(uids(&index, 3, TextField::Body, "gamma"), vec![2, 3]);

    // A replaced document and a deleted one.
    index
        .add(
            3,
            vec![IndexedText {
                uid: 1,
                text: text("omega", ""),
            }],
        )
        .unwrap();
    index.remove(3, &[3]).unwrap();
    index
        .set_mark(
            3,
            FolderMark {
                next_uid: 4,
                expunge_modseq: 10,
            },
        )
        .unwrap();
    index.commit().unwrap();
    assert_eq!(uids(&index, 3, TextField::Body, "alpha"), vec![2]);
    assert_eq!(uids(&index, 3, TextField::Body, "omega"), vec![1, 2]);
    assert_eq!(uids(&index, 3, TextField::Body, "gamma"), vec![2]);
    assert_eq!(index.marks().unwrap().len(), 1);

    index.forget_folder(3);
    index.commit().unwrap();
    assert_eq!(index.candidates(3, TextField::Body, "omega").unwrap(), None);
    assert!(index.marks().unwrap().is_empty());
}

#[test]
fn an_index_of_another_version_is_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("meta.json"), b"{not json").unwrap();
    let index = index(dir.path());
    assert!(index.marks().unwrap().is_empty());
    assert_eq!(index.documents(), 0);
}

#[test]
fn trigrams_are_of_characters() {
    let grams: Vec<&str> = trigrams("añob").into_iter().collect();
    assert_eq!(grams, vec!["año", "ñob"]);
    assert!(trigrams("ab").is_empty());
    assert_eq!(trigrams("abc").into_iter().collect::<Vec<_>>(), vec!["abc"]);
    let grams: Vec<&str> = trigrams("ababa").into_iter().collect();
    assert_eq!(grams, vec!["aba", "bab"]);
}

#[test]
fn header_fields_are_narrowed_each_on_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = index(dir.path());
    let field_text = |values: [&[&str]; 5]| {
        values.map(|vs| vs.iter().map(|v| fold(v)).collect::<Vec<_>>().join("\n"))
    };
    let messages = vec![
        IndexedText {
            uid: 1,
            text: Some(MessageText {
                fields: field_text([
                    &["Ann <ann@example.com>"],
                    &["Bob <bob@example.com>", "Cid <cid@example.com>"],
                    &[],
                    &[],
                    &["Grüße aus Köln"],
                ]),
                ..MessageText::default()
            }),
        },
        IndexedText {
            uid: 2,
            text: Some(MessageText {
                fields: field_text([
                    &["Bob <bob@example.com>"],
                    &["Ann <ann@example.com>"],
                    &["Köln office <koeln@example.com>"],
                    &[],
                    &["Quarterly report"],
                ]),
                ..MessageText::default()
            }),
        },
        IndexedText { uid: 3, text: None },
    ];
    index.add(7, messages).expect("add");
    index
        .set_mark(
            7,
            FolderMark {
                next_uid: 4,
                expunge_modseq: 0,
            },
        )
        .expect("mark");
    index.commit().expect("commit");
    let field = |f: HeaderField, needle: &str| uids(&index, 7, TextField::Field(f), needle);
    assert_eq!(field(HeaderField::Subject, "KÖLN"), vec![1, 3]);
    assert_eq!(field(HeaderField::Cc, "köln"), vec![2, 3]);
    assert_eq!(field(HeaderField::From, "ann@"), vec![1, 3]);
    assert_eq!(field(HeaderField::To, "ann@"), vec![2, 3]);
    assert_eq!(field(HeaderField::To, "cid@example"), vec![1, 3]);
    assert_eq!(field(HeaderField::Bcc, "example"), vec![3]);
    assert_eq!(field(HeaderField::Subject, "report"), vec![2, 3]);
    // Header fields are not body text.
    assert_eq!(uids(&index, 7, TextField::Body, "report"), vec![3]);
}

/// Every text `add` counts into the queue is counted out by the tokenizer: were a text
/// field given another tokenizer, the count would only grow, and past its bound each
/// `add` would wait its full timeout.
#[test]
fn the_queued_text_count_returns_to_zero_once_indexed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = index(dir.path());
    let fields = |s: &str| std::array::from_fn(|i| fold(&format!("{s} field {i}")));
    let messages = (1..=20)
        .map(|uid| IndexedText {
            uid,
            text: (uid % 5 != 0).then(|| MessageText {
                body: fold(&"body text ".repeat(uid as usize * 100)),
                header: fold("Subject: hello"),
                fields: fields("value"),
            }),
        })
        .collect();
    index.add(7, messages).expect("add");
    let mark = FolderMark {
        next_uid: 21,
        expunge_modseq: 0,
    };
    index.set_mark(7, mark).expect("mark");
    index.commit().expect("commit");
    assert_eq!(index.queued.queued(), 0);
    assert_eq!(
        uids(&index, 7, TextField::Body, "body text"),
        (1..=20).collect::<Vec<_>>()
    );
}
