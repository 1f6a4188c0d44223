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
    // Every file too, not only the directory: an edited file must rebuild
    // the binary however the directory's own time moved.
    for path in &names {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let mut out = String::from(
        "/// The files of `rules/` at build time: (file name, bytes).\npub static FILES: &[(&str, &[u8])] = &[\n",
    );
    for path in names {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("UTF-8 file name in rules/");
        // The contents' hash in the generated source, so that the compiler
        // sees a changed file even where it caches what it included.
        let bytes = std::fs::read(&path).expect("readable rule file");
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&bytes, &mut hasher);
        let _ = writeln!(
            out,
            "    // {name}: {} bytes, hash {:016x}\n    ({name:?}, include_bytes!({:?})),",
            bytes.len(),
            std::hash::Hasher::finish(&hasher),
            path.display().to_string()
        );
    }
    out.push_str("];\n");
    let dest =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("embedded_rules.rs");
    std::fs::write(dest, out).expect("write embedded_rules.rs");
}
