//! Generated container names, `adjective_noun` like Docker's (with berth's own word lists).

const ADJECTIVES: &[&str] = &[
    "agile", "bold", "brave", "calm", "clever", "eager", "fast", "gentle", "happy", "keen",
    "lucid", "merry", "nimble", "quiet", "rapid", "serene", "sharp", "steady", "swift", "tidy",
    "vivid", "wise", "witty", "zesty",
];

const NOUNS: &[&str] = &[
    "anchor",
    "barge",
    "beacon",
    "buoy",
    "cutter",
    "dinghy",
    "dock",
    "ferry",
    "galley",
    "harbor",
    "hull",
    "jetty",
    "keel",
    "lighthouse",
    "mast",
    "mooring",
    "pier",
    "quay",
    "rudder",
    "schooner",
    "sloop",
    "tug",
    "wharf",
    "yawl",
];

/// A name not yet taken, according to `taken`.
pub fn generate(taken: impl Fn(&str) -> bool) -> String {
    let mut r = [0u8; 4];
    for attempt in 0..64u32 {
        // SAFETY: r is a writable 4-byte buffer.
        unsafe { libc::getrandom(r.as_mut_ptr().cast(), r.len(), 0) };
        let a = ADJECTIVES[usize::from(r[0]) % ADJECTIVES.len()];
        let n = NOUNS[usize::from(r[1]) % NOUNS.len()];
        let name = if attempt < 8 {
            format!("{a}_{n}")
        } else {
            format!("{a}_{n}{}", u16::from_le_bytes([r[2], r[3]]) % 1000)
        };
        if !taken(&name) {
            return name;
        }
    }
    crate::util::random_id()[..12].to_string()
}
