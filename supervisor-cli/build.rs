//! Gives the `supervisor` and `supervisord` binaries of one build the same
//! build id (a hash of the sources of this crate and of `supervisor-core`),
//! so that `supervisor run` never hands over to a `supervisord` left from
//! another build (see `commands/daemon.rs`).

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::Path;

fn hash_dir(dir: &Path, h: &mut DefaultHasher) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            hash_dir(&p, h);
        } else if let Ok(bytes) = fs::read(&p) {
            p.file_name().hash(h);
            bytes.hash(h);
        }
    }
}

fn main() {
    let mut h = DefaultHasher::new();
    env!("CARGO_PKG_VERSION").hash(&mut h);
    for dir in ["src", "../supervisor-core/src"] {
        println!("cargo:rerun-if-changed={dir}");
        hash_dir(Path::new(dir), &mut h);
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-env=SUPERVISOR_BUILD_ID={:016x}", h.finish());
}
