//! Portico's full-text index: which messages may contain a string, so SEARCH BODY,
//! TEXT and the header keys (FROM, TO, CC, BCC, SUBJECT) read only those.
//!
//! IMAP's BODY and TEXT keys are case-insensitive *substring* matches (RFC 9051
//! §6.4.4), not word matches: `BODY ell` must find "hello". So the index keeps, for
//! every message, the set of character trigrams of its decoded, case-folded text (in
//! tantivy, one term per trigram, postings without positions). Tantivy's own n-gram
//! tokenizer cuts the text on its indexing thread, so a message's text goes to tantivy
//! as it is: no token list is built and copied per message (the text queued there is
//! bounded, see `queued.rs`). A message that contains a needle contains each of the
//! needle's trigrams, so the messages holding all of them are a superset of the true
//! matches; the caller checks each candidate exactly.
//! Needles shorter than three characters cannot be narrowed down and get `None`.
//!
//! What the text *is* (decoded body parts, header values) and how its case is folded
//! are the caller's to decide; this crate never folds. The text must be what the
//! caller's exact check reads, and text and needles must be folded alike by a fold
//! that works character by character (so the fold of a text holds the fold of every
//! substring): Portico's is i;unicode-casemap (`portico_imap::casemap::fold`).
//!
//! Each folder has a *mark*: every message with a UID below `next_uid` was indexed
//! when the mark was written, in the same tantivy commit as their documents, so a
//! mark never claims a message the index lacks. Messages at or above the mark are the
//! caller's to scan. A message whose text could not be read is indexed as `unread`:
//! it is a candidate for every needle. Expunged messages may linger until their
//! documents are deleted; callers only ask about messages they know.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use tantivy::collector::DocSetCollector;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

/// Bumped when the schema or the text fed to it changes: an index of another version
/// is discarded and rebuilt.
const SCHEMA_VERSION: &str = "portico-trigrams-4";
/// The name the trigram tokenizer is registered under on the index.
const TRIGRAM_TOKENIZER: &str = "portico_trigrams";
/// Trigrams looked up per needle: enough to narrow any needle down; more only cost.
const MAX_QUERY_TRIGRAMS: usize = 24;

mod queued;
mod trigrams;
use queued::{CountingTrigrams, MAX_QUEUED_TEXT, QueuedText};

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("full-text index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("full-text index directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("full-text index: folder id {0} is beyond what the index can key")]
    FolderId(u64),
}

pub type Result<T> = std::result::Result<T, IndexError>;

/// Which text a needle is looked for in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TextField {
    /// The decoded body text (SEARCH BODY).
    Body,
    /// Header or body text (SEARCH TEXT).
    Text,
    /// The decoded values of one header field.
    Field(HeaderField),
}

/// The header fields indexed on their own: those SEARCH has keys for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderField {
    From,
    To,
    Cc,
    Bcc,
    Subject,
}

impl HeaderField {
    /// In declaration order: [`HeaderField::position`] is the place in it.
    pub const ALL: [HeaderField; 5] = [
        HeaderField::From,
        HeaderField::To,
        HeaderField::Cc,
        HeaderField::Bcc,
        HeaderField::Subject,
    ];

    /// Where the field is in [`HeaderField::ALL`] and [`MessageText::fields`].
    pub fn position(self) -> usize {
        self as usize
    }

    /// The field's name, as in a header.
    pub fn name(self) -> &'static str {
        match self {
            HeaderField::From => "From",
            HeaderField::To => "To",
            HeaderField::Cc => "Cc",
            HeaderField::Bcc => "Bcc",
            HeaderField::Subject => "Subject",
        }
    }
}

/// How far a folder is indexed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FolderMark {
    /// Every message with a smaller UID has been indexed.
    pub next_uid: u32,
    /// Expunges up to this MODSEQ have had their documents deleted.
    pub expunge_modseq: u64,
}

/// One message's text for the index, case-folded by the caller.
#[derive(Debug)]
pub struct IndexedText {
    pub uid: u32,
    /// `None`: the message could not be read; it stays a candidate for every needle.
    pub text: Option<MessageText>,
}

#[derive(Debug, Default)]
pub struct MessageText {
    pub body: String,
    /// Header text as TEXT compares it (raw block and decoded values).
    pub header: String,
    /// The decoded values of each [`HeaderField`], in the order of
    /// [`HeaderField::ALL`]: each value folded on its own, joined by line feeds.
    pub fields: [String; 5],
}

/// The answer for one needle in one folder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Candidates {
    /// UIDs below this were indexed; at or above, the index knows nothing.
    pub indexed_below: u32,
    /// Indexed messages that may contain the needle, ascending.
    pub uids: Vec<u32>,
}

impl Candidates {
    /// Whether the message with `uid` cannot contain the needle.
    pub fn excludes(&self, uid: u32) -> bool {
        uid < self.indexed_below && self.uids.binary_search(&uid).is_err()
    }
}

struct Fields {
    /// Folder of a message document (indexed, fast).
    folder: Field,
    uid: Field,
    /// Folder and UID in one value, to delete one message's document.
    key: Field,
    body: Field,
    header: Field,
    /// One per [`HeaderField`], in the order of [`HeaderField::ALL`].
    header_fields: [Field; 5],
    /// 1 on messages whose text could not be read.
    unread: Field,
    /// Folder id on a folder's mark document.
    mark: Field,
    mark_next_uid: Field,
    mark_expunge_modseq: Field,
}

/// The index of one node, shared by the indexer (writes) and sessions (queries).
pub struct TextIndex {
    fields: Fields,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    /// Text added and not yet reached by the indexing thread.
    queued: Arc<QueuedText>,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let trigrams = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TRIGRAM_TOKENIZER)
            .set_fieldnorms(false)
            .set_index_option(IndexRecordOption::Basic),
    );
    let fields = Fields {
        folder: builder.add_u64_field("folder", INDEXED | FAST),
        uid: builder.add_u64_field("uid", FAST),
        key: builder.add_u64_field("key", INDEXED),
        body: builder.add_text_field("body", trigrams.clone()),
        header: builder.add_text_field("header", trigrams.clone()),
        header_fields: HeaderField::ALL.map(|field| {
            builder.add_text_field(&field.name().to_ascii_lowercase(), trigrams.clone())
        }),
        unread: builder.add_u64_field("unread", INDEXED),
        mark: builder.add_u64_field("mark", INDEXED | FAST),
        mark_next_uid: builder.add_u64_field("mark_next_uid", FAST),
        mark_expunge_modseq: builder.add_u64_field("mark_expunge_modseq", FAST),
    };
    // Never written; its name records the schema version in meta.json.
    builder.add_text_field(SCHEMA_VERSION, STRING);
    (builder.build(), fields)
}

fn message_key(folder: u64, uid: u32) -> Result<u64> {
    if folder >= 1 << 32 {
        return Err(IndexError::FolderId(folder));
    }
    Ok(folder << 32 | u64::from(uid))
}

/// The distinct trigrams of `folded` (three characters each), as the index stores them.
pub fn trigrams(folded: &str) -> BTreeSet<&str> {
    trigrams::DistinctTrigrams::new(folded).slices().collect()
}

impl TextIndex {
    /// Opens the index in `dir`, creating it (or recreating it, when it was made by
    /// another version) as needed. The writer uses at most `writer_memory` bytes before
    /// it flushes a segment (tantivy wants at least 15 MB).
    pub fn open(dir: &Path, writer_memory: usize) -> Result<TextIndex> {
        let (schema, fields) = schema();
        std::fs::create_dir_all(dir)?;
        let index = match Index::open_in_dir(dir) {
            Ok(index) if index.schema() == schema => index,
            Ok(_) | Err(_) if dir.join("meta.json").exists() => {
                // Another version's index, or a damaged one: rebuilt from the store.
                std::fs::remove_dir_all(dir)?;
                std::fs::create_dir_all(dir)?;
                Index::create_in_dir(dir, schema)?
            }
            _ => Index::create_in_dir(dir, schema)?,
        };
        // Cuts text exactly where `trigrams` cuts needles: at every character.
        let queued = Arc::new(QueuedText::default());
        index
            .tokenizers()
            .register(TRIGRAM_TOKENIZER, CountingTrigrams::new(queued.clone()));
        let writer = index.writer_with_num_threads(1, writer_memory.max(15_000_000))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(TextIndex {
            fields,
            reader,
            writer: Mutex::new(writer),
            queued,
        })
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, IndexWriter> {
        // A panic while indexing leaves nothing half-done that a later commit relies on.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every folder's mark, as of the last commit.
    pub fn marks(&self) -> Result<HashMap<u64, FolderMark>> {
        let searcher = self.reader.searcher();
        let mut marks = HashMap::new();
        for segment in searcher.segment_readers() {
            let fast = segment.fast_fields();
            let (Some(folder), Some(next)) = (
                fast.column_opt::<u64>("mark")?,
                fast.column_opt::<u64>("mark_next_uid")?,
            ) else {
                continue;
            };
            let modseq = fast.column_opt::<u64>("mark_expunge_modseq")?;
            let alive = segment.alive_bitset();
            for doc in 0..segment.max_doc() {
                if alive.is_some_and(|a| !a.is_alive(doc)) {
                    continue;
                }
                // A mark beyond any UID is damaged: without it the folder is indexed
                // again, rather than every UID counted as indexed.
                if let (Some(id), Some(next)) = (folder.first(doc), next.first(doc))
                    && let Ok(next_uid) = u32::try_from(next)
                {
                    let mark = FolderMark {
                        next_uid,
                        expunge_modseq: modseq.as_ref().and_then(|m| m.first(doc)).unwrap_or(0),
                    };
                    marks.insert(id, mark);
                }
            }
        }
        Ok(marks)
    }

    /// Adds messages of `folder` (replacing any document of the same UID). Visible to
    /// queries after the next [`TextIndex::commit`].
    pub fn add(&self, folder: u64, messages: Vec<IndexedText>) -> Result<()> {
        let writer = self.writer();
        for message in messages {
            let key = message_key(folder, message.uid)?;
            writer.delete_term(Term::from_field_u64(self.fields.key, key));
            let mut doc = TantivyDocument::default();
            doc.add_u64(self.fields.folder, folder);
            doc.add_u64(self.fields.uid, u64::from(message.uid));
            doc.add_u64(self.fields.key, key);
            match message.text {
                Some(text) => {
                    let len = text.body.len()
                        + text.header.len()
                        + text.fields.iter().map(String::len).sum::<usize>();
                    self.queued.enqueue(len, MAX_QUEUED_TEXT);
                    doc.add_text(self.fields.body, text.body);
                    doc.add_text(self.fields.header, text.header);
                    for (field, values) in self.fields.header_fields.iter().zip(text.fields) {
                        doc.add_text(*field, values);
                    }
                }
                None => doc.add_u64(self.fields.unread, 1),
            }
            if let Err(e) = writer.add_document(doc) {
                // The document never reaches the tokenizer.
                self.queued.clear();
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Deletes the documents of expunged messages.
    pub fn remove(&self, folder: u64, uids: &[u32]) -> Result<()> {
        let writer = self.writer();
        for &uid in uids {
            writer.delete_term(Term::from_field_u64(
                self.fields.key,
                message_key(folder, uid)?,
            ));
        }
        Ok(())
    }

    /// Deletes everything of a folder (it was deleted, or is reindexed from scratch).
    pub fn forget_folder(&self, folder: u64) {
        let writer = self.writer();
        writer.delete_term(Term::from_field_u64(self.fields.folder, folder));
        writer.delete_term(Term::from_field_u64(self.fields.mark, folder));
    }

    /// Records a folder's mark, in the same commit as the documents added before it.
    pub fn set_mark(&self, folder: u64, mark: FolderMark) -> Result<()> {
        let writer = self.writer();
        writer.delete_term(Term::from_field_u64(self.fields.mark, folder));
        let mut doc = TantivyDocument::default();
        doc.add_u64(self.fields.mark, folder);
        doc.add_u64(self.fields.mark_next_uid, u64::from(mark.next_uid));
        doc.add_u64(self.fields.mark_expunge_modseq, mark.expunge_modseq);
        writer.add_document(doc)?;
        Ok(())
    }

    /// Makes everything added so far durable and visible to queries.
    pub fn commit(&self) -> Result<()> {
        self.writer().commit()?;
        self.reader.reload()?;
        Ok(())
    }

    /// Drops everything added since the last commit.
    pub fn rollback(&self) -> Result<()> {
        let mut writer = self.writer();
        let rolled_back = writer.rollback();
        self.queued.clear();
        rolled_back?;
        Ok(())
    }

    /// The messages of `folder` that may contain `folded_needle` (folded as the
    /// indexed text was) in `field`, or `None` when the index cannot narrow them down
    /// (a needle under three characters, or a folder not indexed yet).
    pub fn candidates(
        &self,
        folder: u64,
        field: TextField,
        folded_needle: &str,
    ) -> Result<Option<Candidates>> {
        let grams = trigrams(folded_needle);
        if grams.is_empty() {
            return Ok(None);
        }
        let searcher = self.reader.searcher();
        let Some(mark) = self.mark(&searcher, folder)? else {
            return Ok(None);
        };
        // Spread over the needle: the first and last trigrams and some between.
        let grams: Vec<&str> = grams.into_iter().collect();
        let step = grams.len().div_ceil(MAX_QUERY_TRIGRAMS);
        let chosen: Vec<&str> = grams.iter().copied().step_by(step.max(1)).collect();
        let all_in = |field: Field| -> Box<dyn Query> {
            Box::new(BooleanQuery::new(
                chosen
                    .iter()
                    .map(|gram| {
                        let term = TermQuery::new(
                            Term::from_field_text(field, gram),
                            IndexRecordOption::Basic,
                        );
                        (Occur::Must, Box::new(term) as Box<dyn Query>)
                    })
                    .collect(),
            ))
        };
        let mut either: Vec<(Occur, Box<dyn Query>)> = vec![(
            Occur::Should,
            Box::new(TermQuery::new(
                Term::from_field_u64(self.fields.unread, 1),
                IndexRecordOption::Basic,
            )),
        )];
        match field {
            TextField::Body => either.push((Occur::Should, all_in(self.fields.body))),
            TextField::Text => {
                either.push((Occur::Should, all_in(self.fields.body)));
                either.push((Occur::Should, all_in(self.fields.header)));
            }
            TextField::Field(header_field) => {
                let indexed = self.fields.header_fields[header_field.position()];
                either.push((Occur::Should, all_in(indexed)));
            }
        }
        let query = BooleanQuery::new(vec![
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_u64(self.fields.folder, folder),
                    IndexRecordOption::Basic,
                )),
            ),
            (Occur::Must, Box::new(BooleanQuery::new(either))),
        ]);
        let found = searcher.search(&query, &DocSetCollector)?;
        let mut uids = Vec::with_capacity(found.len());
        let mut columns = HashMap::new();
        for address in found {
            let column = match columns.entry(address.segment_ord) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(
                    searcher
                        .segment_reader(address.segment_ord)
                        .fast_fields()
                        .u64("uid")?,
                ),
            };
            if let Some(uid) = column.first(address.doc_id) {
                uids.push(u32::try_from(uid).unwrap_or(u32::MAX));
            }
        }
        uids.sort_unstable();
        uids.dedup();
        Ok(Some(Candidates {
            indexed_below: mark.next_uid,
            uids,
        }))
    }

    fn mark(&self, searcher: &tantivy::Searcher, folder: u64) -> Result<Option<FolderMark>> {
        let query = TermQuery::new(
            Term::from_field_u64(self.fields.mark, folder),
            IndexRecordOption::Basic,
        );
        let found = searcher.search(&query, &DocSetCollector)?;
        let Some(address) = found.into_iter().next() else {
            return Ok(None);
        };
        let fast = searcher.segment_reader(address.segment_ord).fast_fields();
        let next = fast.u64("mark_next_uid")?.first(address.doc_id);
        let modseq = fast.u64("mark_expunge_modseq")?.first(address.doc_id);
        Ok(next
            .and_then(|next| u32::try_from(next).ok())
            .map(|next_uid| FolderMark {
                next_uid,
                expunge_modseq: modseq.unwrap_or(0),
            }))
    }

    /// Documents in the index (messages and marks), for reports.
    pub fn documents(&self) -> u64 {
        self.reader.searcher().num_docs()
    }
}

#[cfg(test)]
mod tests;
