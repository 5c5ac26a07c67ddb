//! SORT (RFC 5256, with DISPLAY keys, RFC 5957, and ESORT's RETURN options, RFC 5267)
//! and THREAD (ORDEREDSUBJECT, REFERENCES and REFS): a search whose matches the scan
//! also reads for their order ([`crate::sort`], [`crate::thread`]).

use crate::command::*;
use crate::scan::MatchOrder;
use crate::session::*;

impl Session {
    pub(crate) fn sort(&mut self, tag: String, body: CommandBody) {
        let CommandBody::Sort {
            uid,
            returns,
            criteria,
            charset,
            search,
        } = body
        else {
            return;
        };
        let order = MatchOrder::Sort(criteria);
        self.start_search(tag, uid, Some(&charset), returns, search, Some(order));
    }

    pub(crate) fn thread(&mut self, tag: String, body: CommandBody) {
        let CommandBody::Thread {
            uid,
            algorithm,
            charset,
            search,
        } = body
        else {
            return;
        };
        let order = MatchOrder::Thread(algorithm);
        self.start_search(tag, uid, Some(&charset), None, search, Some(order));
    }
}
