//! Shared by the wire tests (and, through `#[path]`, the bench support): the RFC 4475 corpus
//! checked in at `testdata/rfc4475/`.

/// The repository's `testdata/rfc4475`, seen from this crate.
pub const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/rfc4475");

/// Every message listed in INDEX.tsv as (file, class, bytes); panics with the path when the
/// corpus is missing, so the tests fail loudly instead of passing on nothing.
pub fn corpus() -> Vec<(String, String, Vec<u8>)> {
    let index = std::fs::read_to_string(format!("{CORPUS}/INDEX.tsv"))
        .unwrap_or_else(|e| panic!("RFC 4475 corpus missing at {CORPUS}: {e}"));
    index
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            let data = std::fs::read(format!("{CORPUS}/{}", c[0])).unwrap();
            (c[0].to_string(), c[2].to_string(), data)
        })
        .collect()
}
