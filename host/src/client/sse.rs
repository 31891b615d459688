//! Reading a Server-Sent Events stream: events are blocks of `field: value`
//! lines ended by a blank line; lines starting with `:` are comments.

use futures::StreamExt;

use super::{ClientError, ClientResult};

/// One event: its `event:` name (`message` when absent) and its `data:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub data: String,
}

/// The events of one response, in order.
pub struct Events {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
}

impl Events {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            body: response.bytes_stream().boxed(),
            buffer: Vec::new(),
        }
    }

    /// The next event; `None` when the server ended the stream.
    pub async fn next(&mut self) -> ClientResult<Option<Event>> {
        loop {
            if let Some(block) = take_block(&mut self.buffer) {
                if let Some(event) = parse_block(&block) {
                    return Ok(Some(event));
                }
                continue;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => append(&mut self.buffer, &chunk),
                Some(Err(e)) => {
                    return Err(ClientError::Other(format!("the stream broke: {e}")));
                }
                None => return Ok(None),
            }
        }
    }
}

/// Removes and returns the first complete block (up to a blank line).
fn take_block(buffer: &mut Vec<u8>) -> Option<String> {
    let end = buffer.windows(2).position(|pair| pair == b"\n\n")?;
    let block = String::from_utf8_lossy(&buffer[..end]).into_owned();
    buffer.drain(..end + 2);
    Some(block)
}

/// Appends a chunk of the stream; line ends become `\n` (a `\r\n` split
/// across two chunks too).
fn append(buffer: &mut Vec<u8>, chunk: &[u8]) {
    buffer.extend(chunk.iter().copied().filter(|&byte| byte != b'\r'));
}

/// The event in `block`, or `None` for a block of comments only.
fn parse_block(block: &str) -> Option<Event> {
    let mut name = None;
    let mut data: Option<String> = None;
    for line in block.lines() {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => name = Some(value.to_owned()),
            "data" => match &mut data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            _ => {}
        }
    }
    if name.is_none() && data.is_none() {
        return None;
    }
    Some(Event {
        name: name.unwrap_or_else(|| "message".into()),
        data: data.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_split_on_blank_lines_with_comments_skipped() {
        let mut buffer = Vec::new();
        append(
            &mut buffer,
            b": keep-alive\n\nevent: ready\ndata: {}\n\nevent: exec",
        );
        assert_eq!(take_block(&mut buffer).as_deref(), Some(": keep-alive"));
        assert_eq!(parse_block(": keep-alive"), None);
        let block = take_block(&mut buffer).unwrap();
        assert_eq!(
            parse_block(&block),
            Some(Event {
                name: "ready".into(),
                data: "{}".into()
            })
        );
        // An unfinished block waits for the rest.
        assert_eq!(take_block(&mut buffer), None);
        append(&mut buffer, b"ution\r\ndata: a\r");
        assert_eq!(take_block(&mut buffer), None);
        append(&mut buffer, b"\ndata:b\r\n\r\n");
        let block = take_block(&mut buffer).unwrap();
        assert_eq!(
            parse_block(&block),
            Some(Event {
                name: "execution".into(),
                data: "a\nb".into()
            })
        );
        assert!(buffer.is_empty());
    }
}
