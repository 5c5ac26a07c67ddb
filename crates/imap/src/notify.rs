//! NOTIFY (RFC 5465): which events a session asked for, checked once when it asks.
//!
//! A `NOTIFY SET` names groups of mailboxes and the events wanted for each. The rules
//! between them (§5: MessageNew and MessageExpunge together, FlagChange only with both;
//! §6.1: one of SELECTED and SELECTED-DELAYED, and only message events there) are
//! checked here, into [`Notifications`]: what the selected mailbox's events do, and
//! which events each other mailbox gets. A mailbox several groups match gets every
//! event any of them asks for, as Dovecot does. The selected mailbox is only ever
//! governed by SELECTED or SELECTED-DELAYED (§6.1): the other groups are about the
//! mailboxes that are not selected.

use crate::command::{EventGroup, FetchItems, MailboxFilter, NotifyEvent, NotifySet};
use crate::names;

/// The events Portico can report, as `[BADEVENT]` lists them (RFC 5465 §3.1). There
/// are no per-message annotations (RFC 5257), so no AnnotationChange.
pub const SUPPORTED_EVENTS: &str = "MessageNew MessageExpunge FlagChange MailboxName \
     SubscriptionChange MailboxMetadataChange ServerMetadataChange";

/// What a `NOTIFY SET` asks for, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notifications {
    /// Message events of the selected mailbox; `None`: none (SELECTED NONE, or no
    /// SELECTED group).
    pub selected: Option<SelectedEvents>,
    /// The groups about mailboxes other than the selected one.
    pub groups: Vec<WatchGroup>,
}

/// How the selected mailbox's changes reach the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectedEvents {
    /// SELECTED-DELAYED: expunges wait for a command that allows them (§6.1.2).
    pub delayed: bool,
    /// FlagChange: other sessions' flag changes are pushed as they happen.
    pub flags: bool,
    /// What to FETCH for each new message, pushed after its EXISTS (§5.2).
    pub fetch: Option<FetchItems>,
}

/// Mailboxes other than the selected one and the events wanted for them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchGroup {
    pub filter: Filter,
    pub events: Events,
}

/// [`MailboxFilter`] with its names decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    Inboxes,
    Personal,
    Subscribed,
    /// Each name and every mailbox below it.
    Subtree(Vec<String>),
    Mailboxes(Vec<String>),
}

/// Events wanted for one mailbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events {
    /// MessageNew and MessageExpunge (always together).
    pub messages: bool,
    pub flags: bool,
    pub names: bool,
    pub subscriptions: bool,
    pub metadata: bool,
    pub server_metadata: bool,
}

impl Events {
    fn union(self, other: Events) -> Events {
        Events {
            messages: self.messages || other.messages,
            flags: self.flags || other.flags,
            names: self.names || other.names,
            subscriptions: self.subscriptions || other.subscriptions,
            metadata: self.metadata || other.metadata,
            server_metadata: self.server_metadata || other.server_metadata,
        }
    }

    /// Anything that makes the server send STATUS for the mailbox.
    pub fn wants_status(self) -> bool {
        self.messages || self.flags
    }
}

/// Why a `NOTIFY SET` is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// The client broke a rule of the command: tagged BAD.
    #[error("{0}")]
    Bad(&'static str),
    /// An event the server does not report: tagged `NO [BADEVENT (…)]`.
    #[error("Unsupported NOTIFY event {0}")]
    Unsupported(String),
}

impl Notifications {
    /// Checks `set` and decodes its mailbox names (`utf8`: UTF8=ACCEPT is on). A name
    /// that is not a valid mailbox name can never match one, so it is left out (§6:
    /// names the client cannot see are ignored).
    pub fn from_set(set: &NotifySet, utf8: bool) -> Result<Notifications, NotifyError> {
        let mut notifications = Notifications::default();
        let mut selected_seen = false;
        for group in &set.groups {
            let mut new = None;
            let mut expunge = false;
            let mut events = Events::default();
            let mut fetch = None;
            for event in &group.events {
                match event {
                    NotifyEvent::MessageNew(items) => {
                        new = Some(());
                        fetch = items.clone();
                    }
                    NotifyEvent::MessageExpunge => expunge = true,
                    NotifyEvent::FlagChange => events.flags = true,
                    NotifyEvent::MailboxName => events.names = true,
                    NotifyEvent::SubscriptionChange => events.subscriptions = true,
                    NotifyEvent::MailboxMetadataChange => events.metadata = true,
                    NotifyEvent::ServerMetadataChange => events.server_metadata = true,
                    NotifyEvent::AnnotationChange => {
                        return Err(NotifyError::Unsupported("AnnotationChange".into()));
                    }
                    NotifyEvent::Other(name) => return Err(NotifyError::Unsupported(name.clone())),
                }
            }
            if new.is_some() != expunge {
                return Err(NotifyError::Bad(
                    "MessageNew and MessageExpunge go together",
                ));
            }
            events.messages = expunge;
            if events.flags && !events.messages {
                return Err(NotifyError::Bad(
                    "FlagChange needs MessageNew and MessageExpunge",
                ));
            }
            let is_selected = matches!(
                group.filter,
                MailboxFilter::Selected | MailboxFilter::SelectedDelayed
            );
            if is_selected {
                if selected_seen {
                    return Err(NotifyError::Bad(
                        "Only one of SELECTED and SELECTED-DELAYED may be given",
                    ));
                }
                selected_seen = true;
                if events.names || events.subscriptions || events.metadata || events.server_metadata
                {
                    return Err(NotifyError::Bad("SELECTED takes only message events"));
                }
                if events.messages {
                    notifications.selected = Some(SelectedEvents {
                        delayed: group.filter == MailboxFilter::SelectedDelayed,
                        flags: events.flags,
                        fetch,
                    });
                }
                continue;
            }
            if fetch.is_some() {
                return Err(NotifyError::Bad(
                    "MessageNew FETCH items are only for SELECTED or SELECTED-DELAYED",
                ));
            }
            notifications.groups.push(WatchGroup {
                filter: Filter::of(group, utf8),
                events,
            });
        }
        Ok(notifications)
    }

    /// The events wanted for the mailbox `name` (not the selected one); `subscribed`
    /// says whether it is subscribed.
    pub fn events_for(&self, name: &str, subscribed: bool) -> Events {
        self.groups
            .iter()
            .filter(|group| group.filter.matches(name, subscribed))
            .fold(Events::default(), |all, group| all.union(group.events))
    }

    /// Whether any group asks for server metadata changes.
    pub fn server_metadata(&self) -> bool {
        self.groups.iter().any(|group| group.events.server_metadata)
    }

    /// Whether any group is about other mailboxes' messages, names or subscriptions:
    /// the host then tells the session of changes anywhere in the account.
    pub fn watches_account(&self) -> bool {
        self.groups
            .iter()
            .any(|group| group.events != Events::default())
    }
}

impl Filter {
    fn of(group: &EventGroup, utf8: bool) -> Filter {
        let decode = |raw: &Vec<Vec<u8>>| {
            raw.iter()
                .filter_map(|name| names::decode(name, utf8).ok())
                .collect()
        };
        match &group.filter {
            MailboxFilter::Inboxes => Filter::Inboxes,
            MailboxFilter::Subscribed => Filter::Subscribed,
            MailboxFilter::Subtree(raw) => Filter::Subtree(decode(raw)),
            MailboxFilter::Mailboxes(raw) => Filter::Mailboxes(decode(raw)),
            // SELECTED groups never get here.
            MailboxFilter::Personal | MailboxFilter::Selected | MailboxFilter::SelectedDelayed => {
                Filter::Personal
            }
        }
    }

    /// Whether the mailbox `name` is one of this filter's. INBOXES is INBOX: no other
    /// mailbox receives mail from outside (§6.3).
    pub fn matches(&self, name: &str, subscribed: bool) -> bool {
        match self {
            Filter::Inboxes => name == "INBOX",
            Filter::Personal => true,
            Filter::Subscribed => subscribed,
            Filter::Subtree(roots) => roots.iter().any(|root| {
                name == root
                    || name
                        .strip_prefix(root.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }),
            Filter::Mailboxes(names) => names.iter().any(|n| n == name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::CommandBody;
    use crate::parser::parse_command;

    fn set(raw: &str) -> NotifySet {
        match parse_command(format!("t NOTIFY {raw}\r\n").as_bytes()) {
            Ok(command) => match command.body {
                CommandBody::Notify(Some(set)) => set,
                other => panic!("not NOTIFY SET: {other:?}"),
            },
            Err(e) => panic!("{raw}: {e}"),
        }
    }

    fn check(raw: &str) -> Result<Notifications, NotifyError> {
        Notifications::from_set(&set(raw), false)
    }

    #[test]
    fn rfc5465_examples_are_accepted() {
        // The RFC's §3.1 example writes the events without parentheses, which its own
        // grammar (§8) does not allow; it is refused with a clear text.
        let unparenthesized =
            parse_command(b"t NOTIFY SET STATUS (selected MessageNew (uid) MessageExpunge)\r\n");
        assert_eq!(
            unparenthesized.map(|_| ()).map_err(|e| e.to_string()),
            Err("Invalid NOTIFY events".to_string())
        );
        let n = check(
            "SET STATUS (selected (MessageNew (uid body.peek[header.fields (from to subject)]) \
             MessageExpunge)) (subtree Lists (MessageNew MessageExpunge)) \
             (mailboxes Misc (MessageNew MessageExpunge))",
        )
        .unwrap();
        let selected = n.selected.clone().unwrap();
        assert!(!selected.delayed && !selected.flags && selected.fetch.is_some());
        assert!(n.events_for("Lists/imap", false).messages);
        assert!(n.events_for("Lists", false).messages);
        assert!(!n.events_for("Listsx", false).messages);
        assert!(n.events_for("Misc", false).messages);
        assert!(!n.events_for("INBOX", false).messages);
    }

    #[test]
    fn rules_between_events() {
        let bad = |raw: &str| match check(raw) {
            Err(NotifyError::Bad(why)) => why,
            other => panic!("{raw}: {other:?}"),
        };
        assert_eq!(
            bad("SET (personal (MessageNew))"),
            "MessageNew and MessageExpunge go together"
        );
        assert_eq!(
            bad("SET (personal (MessageExpunge FlagChange))"),
            "MessageNew and MessageExpunge go together"
        );
        assert_eq!(
            bad("SET (personal (FlagChange))"),
            "FlagChange needs MessageNew and MessageExpunge"
        );
        assert_eq!(
            bad(
                "SET (selected (MessageNew MessageExpunge)) (selected-delayed (MessageNew MessageExpunge))"
            ),
            "Only one of SELECTED and SELECTED-DELAYED may be given"
        );
        assert_eq!(
            bad("SET (selected (MailboxName))"),
            "SELECTED takes only message events"
        );
        assert_eq!(
            bad("SET (inboxes (MessageNew (FLAGS) MessageExpunge))"),
            "MessageNew FETCH items are only for SELECTED or SELECTED-DELAYED"
        );
        assert_eq!(
            check("SET (personal (MessageNew MessageExpunge AnnotationChange))"),
            Err(NotifyError::Unsupported("AnnotationChange".into()))
        );
        assert_eq!(
            check("SET (personal (Nonsense))"),
            Err(NotifyError::Unsupported("Nonsense".into()))
        );
    }

    #[test]
    fn filters_and_unions() {
        let n = check(
            "SET (selected-delayed (MessageNew MessageExpunge FlagChange)) \
             (inboxes (MessageNew MessageExpunge)) (subscribed (MailboxName)) \
             (personal (SubscriptionChange)) (mailboxes (Work \"B&AOQ-r\") NONE)",
        )
        .unwrap();
        let selected = n.selected.clone().unwrap();
        assert!(selected.delayed && selected.flags && selected.fetch.is_none());
        let inbox = n.events_for("INBOX", false);
        assert!(inbox.messages && !inbox.names && inbox.subscriptions);
        let work = n.events_for("Work", true);
        assert!(!work.messages && work.names && work.subscriptions);
        assert_eq!(
            n.groups[3].filter,
            Filter::Mailboxes(vec!["Work".into(), "Bär".into()])
        );
        assert!(n.watches_account() && !n.server_metadata());
        // SELECTED NONE: no message events for the selected mailbox.
        let none = check("SET (selected NONE) (personal (ServerMetadataChange))").unwrap();
        assert!(none.selected.is_none() && none.server_metadata());
    }
}
