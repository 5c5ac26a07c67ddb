//! NOTIFY (RFC 5465): the command, and the unsolicited responses it asks for.
//!
//! What a NOTIFY SET wants is checked into [`Notifications`] ([`crate::notify`]). The
//! selected folder's changes then reach the client as they happen, not only at the
//! end of its next command: EXISTS, EXPUNGE (held back with SELECTED-DELAYED until a
//! command allows it) and flag FETCHes, and for each new message an unsolicited FETCH
//! of the items MessageNew names, run as a scan whenever no command is running. Other
//! folders' changes come from the host as [`AccountEvent`]s and are told as STATUS,
//! LIST and METADATA responses to the groups that ask for them.

use crate::command::*;
use crate::fetch;
use crate::notify::{Notifications, NotifyError, SUPPORTED_EVENTS};
use crate::request::*;
use crate::response::{Code, Data, ListEntry, Status};
use crate::scan::{ScanTarget, ScanWork};
use crate::session::*;
use std::sync::Arc;

/// STATUS items of an unsolicited STATUS: what §5.2–§5.3 require (MESSAGES, UIDNEXT,
/// UIDVALIDITY; HIGHESTMODSEQ once CONDSTORE is on) and UNSEEN, which mail clients
/// show beside every folder.
const STATUS_ITEMS: [StatusItem; 4] = [
    StatusItem::Messages,
    StatusItem::UidNext,
    StatusItem::UidValidity,
    StatusItem::Unseen,
];

impl Session {
    pub(crate) fn notify(&mut self, tag: String, set: Option<NotifySet>) {
        let Some(set) = set else {
            self.notify = None;
            self.notify_fetch.clear();
            self.actions.push_back(Action::Request(
                0,
                Request::Notify {
                    watch: false,
                    statuses: false,
                },
            ));
            return self.finish(&tag, Status::ok("NOTIFY completed"), true);
        };
        let notifications = match Notifications::from_set(&set, self.utf8()) {
            Ok(notifications) => notifications,
            Err(NotifyError::Bad(why)) => return self.bad(&tag, why),
            Err(unsupported @ NotifyError::Unsupported(_)) => {
                let code = Code::BadEvent(SUPPORTED_EVENTS.split(' ').collect());
                let status = Status::no(unsupported.to_string()).code(code);
                return self.complete(&tag, status);
            }
        };
        let watch = notifications.watches_account();
        let statuses = set.status && notifications.groups.iter().any(|g| g.events.wants_status());
        self.notify = Some(notifications);
        self.notify_fetch.clear();
        self.request(Running::Notify { tag }, Request::Notify { watch, statuses });
    }

    /// NOTIFY SET's reply: STATUS for every watched folder asked for (`STATUS`), then
    /// the selected folder's pending changes, as a NOOP would (§3.1).
    pub(crate) fn notified(&mut self, tag: String, result: Result<Vec<WatchedFolder>, Fault>) {
        match result {
            Ok(folders) => {
                for folder in folders {
                    self.status_if_watched(&folder, true);
                }
                self.finish(&tag, Status::ok("NOTIFY completed"), true);
            }
            Err(fault) => {
                self.notify = None;
                self.finish(&tag, fault_status(&fault, false), true);
            }
        }
    }

    /// The selected folder's id, if one is selected.
    fn selected_id(&self) -> Option<FolderId> {
        match &self.state {
            State::Selected(selected) => Some(selected.id),
            _ => None,
        }
    }

    /// An unsolicited STATUS for `folder` if a group asks for its message (or, with
    /// `messages` false, flag) changes. The selected folder's are told otherwise.
    fn status_if_watched(&mut self, folder: &WatchedFolder, messages: bool) {
        let Some(notifications) = &self.notify else {
            return;
        };
        if self.selected_id() == Some(folder.folder) {
            return;
        }
        let events = notifications.events_for(&folder.name, folder.subscribed);
        let wanted = match messages {
            true => events.messages,
            false => events.flags,
        };
        if !wanted {
            return;
        }
        let mut items = STATUS_ITEMS.to_vec();
        if self.enabled.condstore {
            items.push(StatusItem::HighestModSeq);
        }
        self.status_line(&folder.name, &items, &folder.status);
    }

    /// A change elsewhere in the account (§5.2–§5.8).
    pub(crate) fn on_account_event(&mut self, event: AccountEvent) {
        if !self.is_authenticated() {
            return;
        }
        let Some(notifications) = &self.notify else {
            return;
        };
        match event {
            AccountEvent::Status { watched, messages } => {
                self.status_if_watched(&watched, messages)
            }
            AccountEvent::Created {
                name,
                subscribed,
                special_use,
            } => {
                if notifications.events_for(&name, subscribed).names {
                    let mut attributes: Vec<&str> =
                        special_use.iter().map(String::as_str).collect();
                    if subscribed {
                        attributes.push("\\Subscribed");
                    }
                    self.list_line(&attributes, &name, None);
                }
            }
            AccountEvent::Deleted { name } => {
                if notifications.events_for(&name, false).names {
                    self.list_line(&["\\NonExistent"], &name, None);
                }
            }
            AccountEvent::Renamed {
                from,
                to,
                subscribed,
            } => {
                let wanted = notifications.events_for(&to, subscribed).names
                    || notifications.events_for(&from, subscribed).names;
                if wanted {
                    let attributes: &[&str] = if subscribed { &["\\Subscribed"] } else { &[] };
                    self.list_line(attributes, &to, Some(&from));
                }
            }
            AccountEvent::Subscription {
                name,
                subscribed,
                exists,
            } => {
                // §5.5: a subscription matches SUBSCRIBED before and after the change.
                let wanted = notifications.events_for(&name, true).subscriptions;
                if wanted {
                    let mut attributes = Vec::new();
                    if !exists {
                        attributes.push("\\NonExistent");
                    }
                    if subscribed {
                        attributes.push("\\Subscribed");
                    }
                    self.list_line(&attributes, &name, None);
                }
            }
            AccountEvent::Metadata { folder, entries } => {
                let wanted = match &folder {
                    Some(name) => notifications.events_for(name, false).metadata,
                    None => notifications.server_metadata(),
                };
                if wanted && !entries.is_empty() {
                    self.metadata_names_line(folder.as_deref().unwrap_or(""), &entries);
                }
            }
            AccountEvent::Overflow => {
                self.notify = None;
                self.notify_fetch.clear();
                self.untagged(
                    Status::ok("Too many changes at once, notifications are off")
                        .code(Code::NotificationOverflow),
                );
            }
        }
    }

    /// `* LIST (attributes) "/" name` with `("OLDNAME" (old))` after a rename (§5.4).
    fn list_line(&mut self, attributes: &[&str], name: &str, old_name: Option<&str>) {
        self.data(Data::List(ListEntry {
            lsub: false,
            attributes,
            name,
            subscribed_child: false,
            old_name,
        }));
    }

    /// RFC 5464 §4.4.2: `* METADATA mailbox entry …`, the names of changed entries.
    fn metadata_names_line(&mut self, mailbox: &str, entries: &[String]) {
        self.data(Data::MetadataChanged { mailbox, entries });
    }

    /// Whether the selected folder's changes may be pushed now: NOTIFY asks for them,
    /// and no command or reply is under way that they would cut into.
    pub(crate) fn may_push_selected(&self) -> bool {
        self.notify.as_ref().is_some_and(|n| n.selected.is_some())
            && self.running.is_none()
            && matches!(self.line_mode, LineMode::Commands)
            && !self.closed
    }

    /// Pushes the selected folder's queued changes as NOTIFY asks (§5.1–§5.3).
    pub(crate) fn push_selected(&mut self) {
        let Some(selected_events) = self.notify.as_ref().and_then(|n| n.selected.clone()) else {
            return;
        };
        self.announce_as(!selected_events.delayed, selected_events.flags);
    }

    /// New messages of the selected folder the client was just told of: fetched for it
    /// when MessageNew names items (§5.2).
    pub(crate) fn note_new_messages(&mut self, uids: &[u32]) {
        let wants_fetch = self
            .notify
            .as_ref()
            .and_then(|n| n.selected.as_ref())
            .is_some_and(|s| s.fetch.is_some());
        if wants_fetch {
            self.notify_fetch.extend_from_slice(uids);
        }
    }

    /// Runs the unsolicited FETCH of new messages, when nothing else runs.
    pub(crate) fn start_notify_fetch(&mut self) {
        if self.notify_fetch.is_empty()
            || self.running.is_some()
            || self.closed
            || matches!(self.line_mode, LineMode::SaslResponse { .. })
        {
            return;
        }
        let uids = std::mem::take(&mut self.notify_fetch);
        let Some(items) = self
            .notify
            .as_ref()
            .and_then(|n| n.selected.as_ref())
            .and_then(|s| s.fetch.clone())
        else {
            return;
        };
        let mut attrs = fetch::expand(&items);
        if !attrs.contains(&FetchAttr::Uid) {
            attrs.insert(0, FetchAttr::Uid);
        }
        // §5.2: items that would set \Seen are the client's mistake; a notification
        // never changes a message (the scan alone sets no flag).
        let style = self.render_style();
        let Some(view) = self.selected_view() else {
            return;
        };
        let targets: Vec<ScanTarget> = uids.iter().filter_map(|&uid| view.target(uid)).collect();
        if targets.is_empty() {
            return;
        }
        let scan = Scan {
            tag: String::new(),
            uid: true,
            detail: fetch::detail(&attrs),
            targets,
            next: 0,
            work: Arc::new(ScanWork::Fetch {
                attrs,
                changed_since: None,
                style,
            }),
            examined: 0,
            kind: ScanKind::Fetch {
                failed: false,
                unsolicited: true,
            },
        };
        self.continue_scan(scan);
    }
}
