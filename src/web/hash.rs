//! A small, stable hash for validators and content-hashed names: a leaf that the page
//! cache and the templates both use (and neither owns).

/// FNV-1a, 64 bits: a small, stable hash (the same in every build and on every machine,
/// which `std`'s hasher does not promise).
pub struct Fnv1a(u64);

impl Fnv1a {
    pub fn new() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a::new()
    }
}
