//! Masks secret values in task output as it streams: every occurrence becomes `***`, also when a value is split
//! across chunks. Only the bytes that could still be the start of a value are held back, and only until the next
//! chunk (or the end) decides them, so live logs stay live.

use bytes::Bytes;

/// What replaces a secret value.
pub const MASK: &[u8] = b"***";

/// A streaming masker for a set of values.
#[derive(Debug, Default)]
pub struct Masker {
    /// Longest first, so that a value containing another is masked whole.
    values: Vec<Vec<u8>>,
    /// Output not yet released: a suffix that may be the start of a value.
    held: Vec<u8>,
    /// The bytes some value starts with: output is searched only where one of them is.
    starts: Starts,
}

#[derive(Debug)]
struct Starts([bool; 256]);

impl Default for Starts {
    fn default() -> Self {
        Self([false; 256])
    }
}

impl Masker {
    /// A masker for `values`; empty values are ignored.
    pub fn new(values: impl IntoIterator<Item = Vec<u8>>) -> Self {
        let mut values: Vec<Vec<u8>> = values.into_iter().filter(|v| !v.is_empty()).collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        let mut starts = Starts::default();
        for value in &values {
            starts.0[usize::from(value[0])] = true;
        }
        Self { values, held: Vec::new(), starts }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Takes the next chunk of output and returns what can be released now, masked. Without values, the chunk
    /// itself (no copy).
    pub fn feed(&mut self, chunk: Bytes) -> Bytes {
        if self.values.is_empty() {
            return chunk;
        }
        Bytes::from(self.mask(&chunk))
    }

    fn mask(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut input = std::mem::take(&mut self.held);
        input.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(input.len());
        let mut i = 0;
        while i < input.len() {
            // Up to the next byte a value starts with, nothing can be masked.
            let plain = input[i..].iter().position(|b| self.starts.0[usize::from(*b)]).unwrap_or(input.len() - i);
            out.extend_from_slice(&input[i..i + plain]);
            i += plain;
            if i == input.len() {
                break;
            }
            let rest = &input[i..];
            if let Some(value) = self.values.iter().find(|v| rest.starts_with(v)) {
                out.extend_from_slice(MASK);
                i += value.len();
                continue;
            }
            // The rest is shorter than some value and could be its start: wait for more output.
            if self.values.iter().any(|v| v.len() > rest.len() && v.starts_with(rest)) {
                self.held = rest.to_vec();
                return out;
            }
            out.push(input[i]);
            i += 1;
        }
        out
    }

    /// The end of the output: releases what was held back (it was not a value).
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(values: &[&str], chunks: &[&str]) -> String {
        let mut masker = Masker::new(values.iter().map(|v| v.as_bytes().to_vec()));
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(masker.feed(Bytes::copy_from_slice(chunk.as_bytes())));
        }
        out.extend(masker.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values_are_masked_whole_and_split_across_chunks() {
        assert_eq!(masked(&["hunter2"], &["password: hunter2\n"]), "password: ***\n");
        assert_eq!(masked(&["hunter2"], &["password: hun", "ter2\n"]), "password: ***\n");
        assert_eq!(masked(&["hunter2"], &["h", "u", "n", "t", "e", "r", "2", "!"]), "***!");
        assert_eq!(masked(&["hunter2"], &["hunter", "3"]), "hunter3", "a near miss is released intact");
        assert_eq!(masked(&["hunter2"], &["ends with hunt"]), "ends with hunt", "held bytes come out at the end");
        assert_eq!(masked(&["abc", "abcdef"], &["xabcdefx abc"]), "x***x ***", "the longest value wins");
        assert_eq!(masked(&["aa"], &["aaaaa"]), "******a");
        assert_eq!(masked(&[], &["nothing to hide"]), "nothing to hide");
        assert_eq!(masked(&[""], &["empty values are ignored"]), "empty values are ignored");
    }

    #[test]
    fn only_a_possible_start_is_held_back() {
        let mut masker = Masker::new([b"secret".to_vec()]);
        assert_eq!(masker.feed(Bytes::from_static(b"line one\nline two se")), &b"line one\nline two "[..]);
        assert_eq!(masker.feed(Bytes::from_static(b"quence\n")), &b"sequence\n"[..]);
        assert_eq!(masker.finish(), b"");
    }
}
