//! The one way kubeha spells a digest or random bytes: lower-case hex, as sha256sum prints it (what the
//! upload compares with a host's `sha256sum` and what the state probe reports).
use sha2::{Digest, Sha256};

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn digests_read_as_sha256sum_prints_them() {
        assert_eq!(super::sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(super::hex(&[0, 0xab, 0x10]), "00ab10");
    }
}
