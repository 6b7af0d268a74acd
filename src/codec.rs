//! The one binary codec of Chorus's log entries, snapshots and peer messages: postcard.

use std::io;

/// Encodes `value` compactly.
pub fn encode<T: serde::Serialize + ?Sized>(value: &T) -> io::Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Encodes `value` into `writer`, as [`encode`] would, without building it in memory.
pub fn encode_into<T: serde::Serialize + ?Sized, W: io::Write>(
    value: &T,
    writer: W,
) -> io::Result<()> {
    postcard::to_io(value, writer)
        .map(drop)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// How many bytes [`encode`] would produce, without producing them.
pub fn encoded_len<T: serde::Serialize + ?Sized>(value: &T) -> io::Result<usize> {
    postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Decodes what [`encode`] produced; any other bytes are `InvalidData`.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    postcard::from_bytes(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
