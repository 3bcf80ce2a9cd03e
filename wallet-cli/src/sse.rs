//! A server-sent events parser (the WHATWG `text/event-stream` format),
//! fed with whatever chunks the connection delivers.
//!
//! Lines end with LF, CR LF or CR (a CR at the end of one chunk and the LF
//! at the start of the next are one line end). `event:` names the event,
//! `data:` lines are joined with LF, `:` lines are comments (the node's
//! keep-alives), other fields are ignored, and a blank line dispatches the
//! event if it has data. A line longer than [`MAX_LINE_BYTES`] is an error
//! rather than an unbounded buffer.

/// The longest line accepted.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// One dispatched event. `event` is `"message"` when the stream named none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event: String,
    pub data: String,
}

#[derive(Debug, thiserror::Error)]
#[error("an event stream line is longer than {MAX_LINE_BYTES} bytes")]
pub struct LineTooLong;

#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    after_cr: bool,
    event: String,
    data: String,
    has_data: bool,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Consumes `bytes` and returns the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Event>, LineTooLong> {
        let mut events = Vec::new();
        for &byte in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, byte == b'\r');
            match byte {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.line_done(&String::from_utf8_lossy(&line)) {
                        events.push(event);
                    }
                }
                _ => {
                    if self.line.len() >= MAX_LINE_BYTES {
                        return Err(LineTooLong);
                    }
                    self.line.push(byte);
                }
            }
        }
        Ok(events)
    }

    fn line_done(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            let data = std::mem::take(&mut self.data);
            let has_data = std::mem::replace(&mut self.has_data, false);
            return has_data.then(|| Event {
                event: if event.is_empty() {
                    "message".to_owned()
                } else {
                    event
                },
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event: &str, data: &str) -> Event {
        Event {
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn parses_the_nodes_block_events_and_skips_comments() {
        let stream = b": keep-alive\n\nevent: block\ndata: {\"height\":1}\n\nevent: lagged\ndata: {\"missed\":10}\n\n";
        let events = Parser::new().push(stream).unwrap();
        assert_eq!(
            events,
            [
                event("block", "{\"height\":1}"),
                event("lagged", "{\"missed\":10}")
            ]
        );
    }

    #[test]
    fn any_chunking_gives_the_same_events() {
        let stream = b"event: block\r\ndata: a\r\ndata:b\r\n\r\nid: 7\rdata: c\r\rdata\n\n";
        let whole = Parser::new().push(stream).unwrap();
        assert_eq!(
            whole,
            [
                event("block", "a\nb"),
                event("message", "c"),
                event("message", "")
            ]
        );
        for split in 0..stream.len() {
            let (a, b) = stream.split_at(split);
            let mut parser = Parser::new();
            let mut events = parser.push(a).unwrap();
            events.extend(parser.push(b).unwrap());
            assert_eq!(events, whole, "split at {split}");
        }
        let mut parser = Parser::new();
        let bytewise: Vec<Event> = stream
            .iter()
            .flat_map(|b| parser.push(&[*b]).unwrap())
            .collect();
        assert_eq!(bytewise, whole);
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut parser = Parser::new();
        assert!(parser.push(&vec![b'x'; MAX_LINE_BYTES]).is_ok());
        assert!(parser.push(b"x").is_err());
    }
}
