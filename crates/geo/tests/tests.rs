//! Integration tests of minsheng-geo, one module per area, all against the
//! real rule files unless a test builds its own.

use std::sync::LazyLock;

use minsheng_core::PlaceSource;
use minsheng_geo::Gazetteer;

mod dictionary;
mod errors;
mod location;
mod ranking;
mod text;
mod unsupported;

const CSV: &str = include_str!("../../../rules/townships.csv");
const PLACES: &str = include_str!("../../../rules/places.toml");
const DICT: &str = include_str!("../../../rules/places.dict");

static GEO: LazyLock<Gazetteer> = LazyLock::new(|| {
    Gazetteer::parse("rules/townships.csv", CSV, "rules/places.toml", PLACES)
        .unwrap_or_else(|e| panic!("the real rule files must load:\n{e}"))
});

/// The code resolved from a location and a text, or `None`.
fn code(location: Option<&str>, text: &str) -> Option<String> {
    GEO.resolve(location, text).map(|t| t.code.to_string())
}

/// The code resolved from a text alone.
fn text_code(text: &str) -> Option<String> {
    code(None, text)
}

/// Checks a table of `(input, expected code)`, reporting every miss at once.
fn check_all(cases: &[(&str, Option<&str>)], resolve: impl Fn(&str) -> Option<String>) {
    let misses: Vec<String> = cases
        .iter()
        .filter_map(|&(input, want)| {
            let got = resolve(input);
            (got.as_deref() != want).then(|| format!("{input:?}: want {want:?}, got {got:?}"))
        })
        .collect();
    assert!(misses.is_empty(), "\n{}", misses.join("\n"));
}

/// The source and matched words of a resolution.
fn how(location: Option<&str>, text: &str) -> Option<(PlaceSource, String)> {
    GEO.resolve(location, text).map(|t| (t.source, t.matched))
}

#[test]
fn real_files_load_with_every_township() {
    assert_eq!(GEO.len(), 72);
    assert!(!GEO.is_empty());
    let code = "330483106".parse().unwrap();
    let info = GEO.get(&code).unwrap();
    assert_eq!(
        (
            info.name.as_str(),
            info.district_code.as_str(),
            info.district.as_str()
        ),
        ("大麻镇", "330483", "桐乡市")
    );
    assert_eq!(GEO.townships().len(), 72);
    assert!(GEO.get(&"330499999".parse().unwrap()).is_none());
}
