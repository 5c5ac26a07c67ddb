//! IMAP METADATA (RFC 5464): annotations an account keeps on its folders and on the
//! server, entry names to values. A folder's annotations follow it through RENAME and
//! go with it at DELETE (RFC 5464 §4.1), so a folder made again under the name starts
//! with none. The server's annotations (folder name "") are the account's own.

use crate::error::{Result, StoreError};
use crate::keys;
use crate::store::{Store, Txn};
use crate::types::AccountId;

/// Refusal of a SETMETADATA that would give one folder (or the server) more entries than
/// its limit.
pub const TOO_MANY_METADATA: &str = "too many annotations";

impl Store {
    /// The annotations of `folder` ("" for the server), ordered by entry name.
    pub fn metadata(&self, account: AccountId, folder: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let prefix = keys::metadata_of(account, folder);
        let mut out = Vec::new();
        for entry in self.db().scan_prefix(&prefix) {
            let (key, value) = entry?;
            let name = std::str::from_utf8(&key[prefix.len()..])
                .map_err(|_| StoreError::Corrupt("annotation name".into()))?;
            out.push((name.to_string(), value.to_vec()));
        }
        Ok(out)
    }

    /// Sets (`Some`) or removes (`None`) annotations of `folder` ("" for the server), all
    /// or none: refused with [`StoreError::LimitExceeded`] when the folder would have more
    /// than `max_entries`, [`StoreError::NotFound`] when the folder does not exist.
    /// Durable on return.
    pub fn set_metadata(
        &self,
        account: AccountId,
        folder: &str,
        changes: &[(String, Option<Vec<u8>>)],
        max_entries: usize,
    ) -> Result<()> {
        let guard = self.lock_writer();
        self.account(account)?;
        if !folder.is_empty()
            && self
                .db()
                .get(keys::mailbox_name(account, folder))?
                .is_none()
        {
            return Err(StoreError::NotFound);
        }
        let prefix = keys::metadata_of(account, folder);
        let mut names = std::collections::BTreeSet::new();
        for key in self.db().scan_prefix(&prefix).keys() {
            names.insert(key?.to_vec());
        }
        let mut txn = Txn::default();
        for (name, value) in changes {
            let key = keys::metadata_entry(account, folder, name);
            match value {
                Some(value) => {
                    txn.batch.insert(key.clone(), value.as_slice());
                    names.insert(key);
                }
                None => {
                    txn.batch.remove(key.clone());
                    names.remove(&key);
                }
            }
        }
        if names.len() > max_entries {
            return Err(StoreError::LimitExceeded(TOO_MANY_METADATA));
        }
        self.commit(txn, guard)
    }

    /// Moves a folder's annotations to its new name within a batch (RENAME).
    pub(crate) fn move_metadata_in(
        &self,
        txn: &mut Txn,
        account: AccountId,
        from: &str,
        to: &str,
    ) -> Result<()> {
        let old = keys::metadata_of(account, from);
        for entry in self.db().scan_prefix(&old) {
            let (key, value) = entry?;
            let name = std::str::from_utf8(&key[old.len()..])
                .map_err(|_| StoreError::Corrupt("annotation name".into()))?;
            txn.batch
                .insert(keys::metadata_entry(account, to, name), value);
            txn.batch.remove(key);
        }
        Ok(())
    }
}
