//! The binary a Batch pool runs must start on the oldest supported image, Ubuntu 22.04
//! (glibc 2.35): no dynamic symbol may need a newer GLIBC version. Checked on the twinload
//! binary this build produced, whose imports are a superset of the lean one's (the lean build
//! only leaves the mock out); `config/batch/package.sh` runs the same check on the lean release
//! binary it packages.

use std::process::Command;

/// Ubuntu 22.04's glibc.
const MAX_GLIBC: (u32, u32) = (2, 35);

/// The highest `GLIBC_x.y` version among an ELF binary's dynamic symbols (objdump -T).
fn highest_glibc(binary: &str) -> (u32, u32) {
    let out = Command::new("objdump").arg("-T").arg(binary).output().expect("objdump (binutils) runs");
    assert!(out.status.success(), "objdump -T {binary} failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let versions: Vec<(u32, u32)> = text
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>());
            match (parts.next(), parts.next()) {
                (Some(Ok(major)), Some(Ok(minor))) => Some((major, minor)),
                _ => None,
            }
        })
        .collect();
    assert!(!versions.is_empty(), "{binary} imports no GLIBC symbol: is it a glibc ELF binary?");
    versions.into_iter().max().unwrap()
}

#[test]
fn the_binary_needs_no_glibc_newer_than_ubuntu_22_04s() {
    let binary = env!("CARGO_BIN_EXE_twinload");
    let (major, minor) = highest_glibc(binary);
    assert!(
        (major, minor) <= MAX_GLIBC,
        "{binary} needs GLIBC_{major}.{minor}, newer than {}.{} (Ubuntu 22.04); find the symbol with objdump -T",
        MAX_GLIBC.0,
        MAX_GLIBC.1
    );
}
