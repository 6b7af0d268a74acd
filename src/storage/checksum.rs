//! Checksummed values: every value Chorus stores in sled is its postcard encoding
//! followed by the encoding's CRC-32, so a damaged value is refused, naming what it
//! was, instead of decoded into something else or failing somewhere far away.

use std::io;

use crate::codec;

/// Bytes the checksum adds to a value.
const CRC_BYTES: usize = 4;

/// `value` encoded, with its checksum.
pub fn seal<T: serde::Serialize + ?Sized>(value: &T) -> io::Result<Vec<u8>> {
    let mut bytes = codec::encode(value)?;
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    Ok(bytes)
}

/// Decodes what [`seal`] stored, refusing it if the checksum does not match; `what`
/// names the value in the error.
pub fn open<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &dyn Fn() -> String,
) -> io::Result<T> {
    let Some(split) = bytes.len().checked_sub(CRC_BYTES) else {
        return Err(damaged(what, "is shorter than its checksum"));
    };
    let (body, crc) = bytes.split_at(split);
    let stored = u32::from_le_bytes(crc.try_into().expect("four bytes"));
    if crc32fast::hash(body) != stored {
        return Err(damaged(what, "fails its checksum"));
    }
    codec::decode(body).map_err(|e| {
        damaged(
            what,
            &format!("passes its checksum but does not decode ({e})"),
        )
    })
}

fn damaged(what: &dyn Fn() -> String, how: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{} {how}", what()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_and_any_flipped_bit_is_refused() {
        let sealed = seal(&("session", 42u64)).unwrap();
        let what = || "the value".to_string();
        assert_eq!(
            open::<(String, u64)>(&sealed, &what).unwrap(),
            ("session".into(), 42)
        );
        for bit in 0..sealed.len() * 8 {
            let mut damaged = sealed.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let error = open::<(String, u64)>(&damaged, &what).unwrap_err();
            assert!(error.to_string().starts_with("the value "), "{error}");
        }
        assert!(open::<u64>(&[1, 2], &what).is_err());
    }
}
