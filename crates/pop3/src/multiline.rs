//! Message bodies as POP3 multi-line responses (RFC 1939 §3): byte-stuffing, the
//! terminating CRLF, and the part of a message TOP sends (RFC 1939 §7).
//!
//! Lines are found by LF alone. The store hands over CRLF text, but a stray bare LF must
//! still start a new line here, or a `.` after it would go out unstuffed and a client that
//! splits on LF would end the response early.

/// Appends `body` byte-stuffed to `out`, ending it with CRLF when it does not already,
/// but without the terminating `.` line. Apart from the added dots (and that CRLF) the
/// bytes are sent unchanged, so a signed message stays verifiable.
pub(crate) fn push_stuffed(out: &mut Vec<u8>, body: &[u8]) {
    let mut stuffing = Stuffing::default();
    stuffing.push(out, body);
    stuffing.finish(out);
}

/// Byte-stuffing of a body that comes in pieces: where a line starts depends on how
/// the piece before ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stuffing {
    at_line_start: bool,
    /// The last two bytes of the body so far, to see whether it ended with CRLF.
    last: [u8; 2],
    empty: bool,
}

impl Default for Stuffing {
    fn default() -> Self {
        Stuffing {
            at_line_start: true,
            last: [0, 0],
            empty: true,
        }
    }
}

impl Stuffing {
    /// Appends the next piece, stuffed.
    pub(crate) fn push(&mut self, out: &mut Vec<u8>, piece: &[u8]) {
        // Dots are rare; a little headroom avoids most regrowth.
        out.reserve(piece.len() + piece.len() / 512 + 8);
        for line in piece.split_inclusive(|&b| b == b'\n') {
            if self.at_line_start && line.first() == Some(&b'.') {
                out.push(b'.');
            }
            out.extend_from_slice(line);
            self.at_line_start = line.ends_with(b"\n");
        }
        match piece {
            [] => {}
            [only] => self.last = [self.last[1], *only],
            [.., a, b] => self.last = [*a, *b],
        }
        self.empty &= piece.is_empty();
    }

    /// Ends the body with CRLF if it does not already (an empty one has no lines, so
    /// nothing needs terminating); the terminating `.` line is the caller's.
    pub(crate) fn finish(&self, out: &mut Vec<u8>) {
        if !self.empty && self.last != *b"\r\n" {
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// How many leading octets of `message` TOP sends for `body_lines`: the header up to and
/// including the empty line that ends it, then that many body lines. A message without an
/// empty line is all header.
pub(crate) fn top_len(message: &[u8], body_lines: usize) -> usize {
    let mut pos = 0;
    loop {
        let Some(lf) = find_lf(message, pos) else {
            return message.len();
        };
        let line = &message[pos..lf];
        pos = lf + 1;
        if line.is_empty() || line == b"\r" {
            break;
        }
    }
    for _ in 0..body_lines {
        match find_lf(message, pos) {
            Some(lf) => pos = lf + 1,
            None => return message.len(),
        }
    }
    pos
}

/// Whether `prefix`, the start of a message, holds everything TOP sends for
/// `body_lines`: a host reading a big message a piece at a time stops there.
pub fn top_is_within(prefix: &[u8], body_lines: usize) -> bool {
    top_len(prefix, body_lines) < prefix.len()
}

fn find_lf(bytes: &[u8], from: usize) -> Option<usize> {
    bytes
        .get(from..)?
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| from + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuffed(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        push_stuffed(&mut out, body);
        out
    }

    #[test]
    fn a_body_in_pieces_is_stuffed_as_if_whole() {
        for body in [
            &b".a\r\nb.c\r\n..d\r\n.\r\nend\r\n"[..],
            b"a\n.b\r\n",
            b"a\r\n.b",
            b"x",
            b"\r\n.\r\n.",
        ] {
            for cut in 0..=body.len() {
                for second in cut..=body.len() {
                    let mut out = Vec::new();
                    let mut stuffing = Stuffing::default();
                    for piece in [&body[..cut], &body[cut..second], &body[second..]] {
                        stuffing.push(&mut out, piece);
                    }
                    stuffing.finish(&mut out);
                    assert_eq!(out, stuffed(body), "{body:?} cut at {cut} and {second}");
                }
            }
        }
    }

    #[test]
    fn stuffs_leading_dots_only() {
        assert_eq!(
            stuffed(b".a\r\nb.c\r\n..d\r\n.\r\nend\r\n"),
            b"..a\r\nb.c\r\n...d\r\n..\r\nend\r\n"
        );
    }

    #[test]
    fn a_bare_lf_starts_a_line_for_stuffing() {
        assert_eq!(stuffed(b"a\n.b\r\n"), b"a\n..b\r\n");
    }

    #[test]
    fn unterminated_body_gets_crlf() {
        assert_eq!(stuffed(b"a\r\n.b"), b"a\r\n..b\r\n");
        assert_eq!(stuffed(b"a\n"), b"a\n\r\n");
    }

    #[test]
    fn empty_body_stays_empty() {
        assert_eq!(stuffed(b""), b"");
    }

    #[test]
    fn other_bytes_pass_unchanged() {
        let body: Vec<u8> = (0u8..=255).filter(|&b| b != b'.').collect();
        let mut body = [body.as_slice(), b"\r\n"].concat();
        body.insert(0, b'x');
        assert_eq!(stuffed(&body), body);
    }

    const MSG: &[u8] = b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n";

    #[test]
    fn top_zero_is_header_and_separator() {
        assert_eq!(&MSG[..top_len(MSG, 0)], b"A: 1\r\nB: 2\r\n\r\n");
    }

    #[test]
    fn top_counts_body_lines() {
        assert_eq!(&MSG[..top_len(MSG, 2)], b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n");
        assert_eq!(top_len(MSG, 3), MSG.len());
        assert_eq!(top_len(MSG, usize::MAX), MSG.len());
    }

    #[test]
    fn top_of_headers_only_message() {
        let msg = b"A: 1\r\nB: 2\r\n";
        assert_eq!(top_len(msg, 5), msg.len());
        assert_eq!(top_len(b"A: 1", 0), 4);
        assert_eq!(top_len(b"", 0), 0);
    }

    #[test]
    fn top_with_unterminated_last_line() {
        let msg = b"A: 1\r\n\r\nl1\r\nl2";
        assert_eq!(top_len(msg, 1), 12);
        assert_eq!(top_len(msg, 2), msg.len());
    }

    #[test]
    fn top_with_bare_lf_separator() {
        let msg = b"A: 1\n\nl1\nl2\n";
        assert_eq!(&msg[..top_len(msg, 1)], b"A: 1\n\nl1\n");
    }

    #[test]
    fn a_prefix_holds_the_top_once_its_lines_are_complete() {
        let message = b"A: b\r\nC: d\r\n\r\none\r\ntwo\r\nthree\r\n";
        // Header cut short: more is needed.
        assert!(!top_is_within(&message[..8], 0));
        // Header complete, no body lines wanted.
        assert!(top_is_within(&message[..15], 0));
        // Two body lines wanted: the second must have ended within the prefix.
        assert!(!top_is_within(&message[..22], 2));
        assert!(top_is_within(&message[..25], 2));
        // Every prefix cuts where the whole message does.
        for end in 1..=message.len() {
            if top_is_within(&message[..end], 2) {
                assert_eq!(top_len(&message[..end], 2), top_len(message, 2));
            }
        }
    }
}
