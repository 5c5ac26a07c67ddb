//! Mailboxes brought from another node (a mailbox move): folders and messages are
//! recreated with the numbers clients already hold — UIDVALIDITY, UIDs, UIDNEXT,
//! MODSEQs, flags and dates (internal and save dates) — so a client that synchronised against the old node
//! carries on against the new one without downloading anything again.
//!
//! Only the folder's expunge history is not carried: an imported folder's
//! `vanished_floor` is its HIGHESTMODSEQ, which tells QRESYNC that expunges before the
//! move are not known individually (RFC 7162 §3.2.5.2 lets the server answer with a
//! wider VANISHED set then).

use crate::error::{Result, StoreError};
use crate::keys;
use crate::record::encode;
use crate::store::{CommitTicket, StagedMessage, Store, Txn, validate_mailbox_name};
use crate::types::*;

/// A folder as its old node held it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderImport {
    pub name: String,
    pub uidvalidity: Uidvalidity,
    pub uidnext: Uid,
    pub highest_modseq: ModSeq,
    pub special_use: Option<SpecialUse>,
    pub subscribed: bool,
}

/// A message's numbers and flags as its old node held them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageImport {
    pub uid: Uid,
    pub flags: Flags,
    pub internal_date: (i64, i32),
    pub modseq: ModSeq,
    /// Kept as it was (or unknown as it was): the message stays in the same folder as
    /// clients see it, and RFC 8514 §3 lets a save date change only with the folder.
    pub save_date: Option<i64>,
}

impl MessageImport {
    pub fn of(meta: &MessageMeta) -> MessageImport {
        MessageImport {
            uid: meta.uid,
            flags: meta.flags.clone(),
            internal_date: (meta.internal_date, meta.internal_date_offset),
            modseq: meta.modseq,
            save_date: meta.save_date,
        }
    }
}

impl Store {
    /// What a folder of this store carries to another.
    pub fn folder_import(&self, folder: &Mailbox) -> Result<FolderImport> {
        Ok(FolderImport {
            name: folder.name.clone(),
            uidvalidity: folder.uidvalidity,
            uidnext: folder.uidnext,
            highest_modseq: folder.highest_modseq,
            special_use: folder.special_use,
            subscribed: self.is_subscribed(folder.account, &folder.name)?,
        })
    }

    /// An account with no folder yet, for a mailbox being brought here: its folders
    /// come with [`Store::import_folder`]. Durable on return.
    pub fn import_account(
        &self,
        address: &str,
        password_hash: &str,
        created: i64,
    ) -> Result<Account> {
        self.new_account(address, password_hash, created, &[])
    }

    /// Recreates a folder of an imported account with its old numbers. Durable on return.
    pub fn import_folder(&self, account: AccountId, folder: &FolderImport) -> Result<Mailbox> {
        let name = validate_mailbox_name(&folder.name)?;
        if folder.uidnext.0 == 0 || folder.uidvalidity.0 == 0 {
            return Err(StoreError::NotAllowed(
                "a folder's UIDNEXT and UIDVALIDITY start at 1",
            ));
        }
        let guard = self.lock_writer();
        self.account(account)?;
        if self.db().get(keys::mailbox_name(account, &name))?.is_some() {
            return Err(StoreError::AlreadyExists);
        }
        let mut txn = Txn::default();
        let id = MailboxId(self.next_counter(&mut txn, "mailbox", 1)?);
        // This store's next UIDVALIDITY goes past the imported one, so a folder deleted
        // and made again here never gets the value the old one had.
        self.next_counter(&mut txn, "uidvalidity", u64::from(folder.uidvalidity.0))?;
        let mailbox = Mailbox {
            id,
            account,
            name: name.to_string(),
            uidvalidity: folder.uidvalidity,
            uidnext: folder.uidnext,
            highest_modseq: folder.highest_modseq,
            special_use: folder.special_use,
            messages: 0,
            size: 0,
            expunged_kept: 0,
            vanished_floor: folder.highest_modseq,
        };
        txn.batch
            .insert(keys::mailbox_name(account, &name), &id.0.to_be_bytes());
        txn.batch.insert(keys::mailbox(id), encode(&mailbox)?);
        if folder.subscribed {
            Self::subscribe_in(&mut txn, account, &name);
        }
        self.commit(txn, guard)?;
        Ok(mailbox)
    }

    /// Adds messages to an imported folder under their old UIDs, in ascending UID
    /// order, each below the folder's UIDNEXT and above every UID it holds. All or
    /// nothing; durable once [`Store::wait_committed`] returns for the ticket.
    pub fn import_messages(
        &self,
        mailbox: MailboxId,
        messages: Vec<(StagedMessage, MessageImport)>,
    ) -> Result<CommitTicket> {
        let guard = self.lock_writer();
        let mut folder = self.mailbox(mailbox)?;
        let mut last = match self.db().scan_prefix(keys::messages(mailbox)).next_back() {
            Some(entry) => Some(crate::record::decode::<MessageMeta>(&entry?.1)?.uid),
            None => None,
        };
        let mut txn = Txn::default();
        let mut arrivals = Vec::with_capacity(messages.len());
        let mut bodies = Vec::with_capacity(messages.len());
        for (staged, message) in messages {
            if message.uid.0 == 0
                || message.uid >= folder.uidnext
                || last.is_some_and(|last| message.uid <= last)
            {
                return Err(StoreError::NotAllowed(
                    "an imported message's UID is out of order or past UIDNEXT",
                ));
            }
            last = Some(message.uid);
            let body = self.link_body(&mut txn, &staged.body)?;
            let meta = MessageMeta {
                uid: message.uid,
                flags: message.flags,
                internal_date: message.internal_date.0,
                internal_date_offset: message.internal_date.1,
                size: staged.body.location.len,
                modseq: message.modseq,
                body,
                save_date: message.save_date,
            };
            folder.highest_modseq = folder.highest_modseq.max(meta.modseq);
            folder.messages += 1;
            folder.size += meta.size;
            txn.batch
                .insert(keys::message(mailbox, meta.uid), encode(&meta)?);
            txn.count_message(mailbox, &meta.flags, 1);
            txn.batch
                .insert(keys::summary(mailbox, meta.uid), staged.summary);
            txn.batch
                .insert(keys::search_fields(mailbox, meta.uid), staged.search_fields);
            arrivals.push(staged.arrival);
            bodies.push(staged.body);
        }
        txn.batch.insert(keys::mailbox(mailbox), encode(&folder)?);
        let ticket = self.apply_arrived(txn, guard, arrivals)?;
        drop(bodies);
        Ok(ticket)
    }
}
