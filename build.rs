//! Embeds the default rule set (`rules/`) in the binary, so that
//! `minsheng classify` works with no files around.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("rules/ is part of the source tree")
        .map(|e| e.expect("readable rules/ entry").path())
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    let mut out = String::from(
        "/// The files of `rules/` at build time: (file name, bytes).\npub static FILES: &[(&str, &[u8])] = &[\n",
    );
    for path in names {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("UTF-8 file name in rules/");
        // The path is written relative to the package, not as this
        // checkout's absolute path: several checkouts sharing one target
        // directory share this generated file, and each must include its
        // own rules (which the compiler then tracks, file by file).
        let _ = writeln!(
            out,
            "    ({name:?}, include_bytes!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/rules/{name}\"))),"
        );
    }
    out.push_str("];\n");
    let dest =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("embedded_rules.rs");
    std::fs::write(dest, out).expect("write embedded_rules.rs");
}
