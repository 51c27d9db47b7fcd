//! The framing of `gofer task attach`: after the HTTP upgrade (`Upgrade: gofer-attach`), both sides send frames of
//! one kind byte, a big-endian u32 length and that many bytes. The client sends input, terminal sizes and the end of
//! its input; the server sends output and, last, the command's exit code.

/// The protocol name in the `Upgrade` header.
pub const UPGRADE: &str = "gofer-attach";
/// The largest frame either side sends or takes.
pub const MAX_FRAME: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Client → server: bytes for the command's stdin.
    Input(Vec<u8>),
    /// Client → server: the terminal's size changed.
    Resize { columns: u16, rows: u16 },
    /// Client → server: no more input.
    EndOfInput,
    /// Server → client: bytes the command wrote.
    Output(Vec<u8>),
    /// Server → client: the command exited with this code; nothing follows.
    Exit(i64),
}

impl Frame {
    pub fn encode(&self) -> Vec<u8> {
        let (size, code);
        let (kind, payload): (u8, &[u8]) = match self {
            Self::Input(bytes) => (0, bytes),
            Self::Resize { columns, rows } => {
                size = [columns.to_be_bytes(), rows.to_be_bytes()].concat();
                (1, &size)
            }
            Self::EndOfInput => (2, &[]),
            Self::Output(bytes) => (3, bytes),
            Self::Exit(exit) => {
                code = exit.to_be_bytes();
                (4, &code)
            }
        };
        let mut frame = Vec::with_capacity(5 + payload.len());
        frame.push(kind);
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    /// Takes one whole frame off the front of `buffer`; `None` until one has arrived.
    pub fn decode(buffer: &mut Vec<u8>) -> Result<Option<Frame>, String> {
        if buffer.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
        if len > MAX_FRAME {
            return Err(format!("a frame of {len} bytes is larger than {MAX_FRAME}"));
        }
        if buffer.len() < 5 + len {
            return Ok(None);
        }
        let kind = buffer[0];
        let payload: Vec<u8> = buffer.drain(..5 + len).skip(5).collect();
        let frame = match (kind, payload.len()) {
            (0, _) => Self::Input(payload),
            (1, 4) => Self::Resize {
                columns: u16::from_be_bytes([payload[0], payload[1]]),
                rows: u16::from_be_bytes([payload[2], payload[3]]),
            },
            (2, 0) => Self::EndOfInput,
            (3, _) => Self::Output(payload),
            (4, 8) => {
                let mut code = [0u8; 8];
                code.copy_from_slice(&payload);
                Self::Exit(i64::from_be_bytes(code))
            }
            (kind, len) => return Err(format!("unknown frame: kind {kind} with {len} bytes")),
        };
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_back_what_was_written_whole_or_in_pieces() {
        let frames = [
            Frame::Input(b"ls\n".to_vec()),
            Frame::Resize { columns: 120, rows: 40 },
            Frame::EndOfInput,
            Frame::Output(vec![0, 255, 10]),
            Frame::Exit(-3),
        ];
        let wire: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let mut buffer = Vec::new();
        let mut read = Vec::new();
        for byte in wire {
            buffer.push(byte);
            while let Some(frame) = Frame::decode(&mut buffer).unwrap() {
                read.push(frame);
            }
        }
        assert_eq!(read, frames);
        assert!(buffer.is_empty());
        let mut bad = vec![9, 0, 0, 0, 0];
        assert!(Frame::decode(&mut bad).is_err());
        let mut huge = vec![0, 255, 255, 255, 255];
        assert!(Frame::decode(&mut huge).is_err());
    }
}
