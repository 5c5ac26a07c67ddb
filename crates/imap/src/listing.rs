//! Which names LIST and LSUB show, and with which attributes (RFC 9051 §6.3.9, RFC 3501
//! §6.3.9 LSUB, RFC 5258 LIST-EXTENDED, RFC 6154 SPECIAL-USE): the rules apart from
//! the session, over the account's folders and subscribed names.

use std::collections::{BTreeMap, BTreeSet};

use crate::names;
use crate::request::{FolderInfo, FolderList};

/// What a LIST or LSUB asked for.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// LSUB (RFC 3501): subscribed names, `\Noselect` for levels and names that are
    /// not folders, no child or special-use attributes.
    pub lsub: bool,
    /// Full patterns, the reference joined in.
    pub patterns: Vec<String>,
    /// Selection options (RFC 5258 §3).
    pub subscribed_only: bool,
    pub special_use_only: bool,
    pub recursive_match: bool,
    /// Return options (RFC 5258 §4, RFC 6154 §3).
    pub return_subscribed: bool,
    pub return_special_use: bool,
}

/// One LIST or LSUB response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub attributes: Vec<&'static str>,
    /// RECURSIVEMATCH with SUBSCRIBED: a name below this one is subscribed
    /// (`("CHILDINFO" ("SUBSCRIBED"))`, RFC 5258 §3.5).
    pub subscribed_child: bool,
    /// A folder (STATUS can follow it, RFC 5819).
    pub exists: bool,
}

/// The responses to `query`, ordered by name.
pub fn list(query: &ListQuery, list: &FolderList) -> Vec<Listed> {
    let folders: BTreeMap<&str, &FolderInfo> =
        list.folders.iter().map(|f| (f.name.as_str(), f)).collect();
    let subscribed: BTreeSet<&str> = list.subscriptions.iter().map(String::as_str).collect();
    // Levels with a folder below them, and levels with a subscribed name below them.
    let with_children: BTreeSet<&str> = folders.keys().flat_map(|n| names::parents(n)).collect();
    let subscribed_below: BTreeSet<&str> =
        subscribed.iter().flat_map(|n| names::parents(n)).collect();

    let mut candidates: BTreeSet<&str> = folders.keys().copied().collect();
    candidates.extend(&with_children);
    if query.subscribed_only || query.lsub {
        candidates.extend(&subscribed);
        candidates.extend(&subscribed_below);
    }
    let matches = |name: &str| query.patterns.iter().any(|p| names::matches(p, name));
    let mut out = Vec::new();
    for name in candidates {
        if !matches(name) {
            continue;
        }
        let folder = folders.get(name);
        let exists = folder.is_some();
        let is_subscribed = subscribed.contains(name);
        let has_subscribed_below = subscribed_below.contains(name);
        if (query.subscribed_only || query.lsub) && !is_subscribed {
            // RFC 3501 §6.3.9: with `%` last, LSUB names the level above a subscribed
            // name that `%` does not reach, flagged \Noselect.
            let lsub_level = query.lsub
                && has_subscribed_below
                && query
                    .patterns
                    .iter()
                    .any(|p| p.ends_with('%') && names::matches(p, name));
            let child_matches = query.recursive_match && has_subscribed_below;
            if !lsub_level && !child_matches {
                continue;
            }
        }
        let special_use = folder.and_then(|f| f.special_use);
        if query.special_use_only && special_use.is_none() {
            continue;
        }
        let mut attributes = Vec::new();
        if query.lsub {
            if !exists || !is_subscribed {
                attributes.push("\\Noselect");
            }
        } else {
            if !exists {
                // RFC 5258 §3.4; a plain LIST shows a level with \Noselect as IMAP4rev1
                // clients expect.
                let extended = query.subscribed_only || query.recursive_match;
                attributes.push(if extended {
                    "\\NonExistent"
                } else {
                    "\\Noselect"
                });
            }
            if with_children.contains(name) {
                attributes.push("\\HasChildren");
            } else if exists {
                attributes.push("\\HasNoChildren");
            }
            if (query.return_subscribed || query.subscribed_only) && is_subscribed {
                attributes.push("\\Subscribed");
            }
        }
        if let Some(usage) = special_use
            && (!query.lsub || query.return_special_use)
        {
            attributes.push(usage);
        }
        out.push(Listed {
            name: name.to_string(),
            attributes,
            subscribed_child: !query.lsub
                && query.recursive_match
                && query.subscribed_only
                && has_subscribed_below,
            exists,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5258 §5's hierarchy: Fruit/Peach subscribed but gone, Fruit not subscribed
    /// with two subscribed children, Vegetable and one child subscribed.
    fn fruit() -> FolderList {
        let folder = |name: &str| FolderInfo {
            name: name.into(),
            special_use: None,
        };
        FolderList {
            folders: [
                "INBOX",
                "Fruit",
                "Fruit/Apple",
                "Fruit/Banana",
                "Tofu",
                "Vegetable",
                "Vegetable/Broccoli",
                "Vegetable/Corn",
            ]
            .into_iter()
            .map(folder)
            .collect(),
            subscriptions: [
                "INBOX",
                "Fruit/Banana",
                "Fruit/Peach",
                "Vegetable",
                "Vegetable/Broccoli",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
        }
    }

    fn lines(query: &ListQuery, list: &FolderList) -> Vec<String> {
        super::list(query, list)
            .into_iter()
            .map(|l| {
                let info = if l.subscribed_child { " CHILDINFO" } else { "" };
                format!("({}) {}{info}", l.attributes.join(" "), l.name)
            })
            .collect()
    }

    fn query(patterns: &[&str]) -> ListQuery {
        ListQuery {
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
            ..ListQuery::default()
        }
    }

    #[test]
    fn subscribed_selection_shows_names_that_are_gone_as_nonexistent() {
        let q = ListQuery {
            subscribed_only: true,
            ..query(&["*"])
        };
        assert_eq!(
            lines(&q, &fruit()),
            [
                "(\\HasNoChildren \\Subscribed) Fruit/Banana",
                "(\\NonExistent \\Subscribed) Fruit/Peach",
                "(\\HasNoChildren \\Subscribed) INBOX",
                "(\\HasChildren \\Subscribed) Vegetable",
                "(\\HasNoChildren \\Subscribed) Vegetable/Broccoli",
            ]
        );
    }

    #[test]
    fn return_subscribed_marks_folders_and_lists_no_names_that_are_gone() {
        let q = ListQuery {
            return_subscribed: true,
            ..query(&["*"])
        };
        let got = lines(&q, &fruit());
        assert_eq!(got.len(), 8);
        assert!(got.contains(&"(\\HasChildren) Fruit".to_string()));
        assert!(got.contains(&"(\\HasNoChildren \\Subscribed) Fruit/Banana".to_string()));
        assert!(!got.iter().any(|l| l.contains("Peach")));
    }

    #[test]
    fn recursive_match_names_parents_of_subscribed_names() {
        let q = ListQuery {
            subscribed_only: true,
            recursive_match: true,
            ..query(&["%"])
        };
        assert_eq!(
            lines(&q, &fruit()),
            [
                "(\\HasChildren) Fruit CHILDINFO",
                "(\\HasNoChildren \\Subscribed) INBOX",
                "(\\HasChildren \\Subscribed) Vegetable CHILDINFO",
            ]
        );
    }

    #[test]
    fn lsub_shows_levels_and_names_that_are_gone_noselect() {
        let q = ListQuery {
            lsub: true,
            ..query(&["%"])
        };
        assert_eq!(
            lines(&q, &fruit()),
            ["(\\Noselect) Fruit", "() INBOX", "() Vegetable"]
        );
        let q = ListQuery {
            lsub: true,
            ..query(&["Fruit/*"])
        };
        assert_eq!(
            lines(&q, &fruit()),
            ["() Fruit/Banana", "(\\Noselect) Fruit/Peach"]
        );
    }

    #[test]
    fn a_level_that_is_only_subscribed_below_is_nonexistent() {
        let list = FolderList {
            folders: vec![],
            subscriptions: vec!["Foo/Baz".into()],
        };
        let q = ListQuery {
            subscribed_only: true,
            recursive_match: true,
            ..query(&["%"])
        };
        assert_eq!(lines(&q, &list), ["(\\NonExistent) Foo CHILDINFO"]);
        let plain = query(&["*"]);
        assert!(lines(&plain, &list).is_empty());
    }
}
