//! Load errors name what is wrong and where: `file:line:col: message`.

use minsheng_geo::{Gazetteer, GeoError, Problem};

const GOOD_CSV: &str = "code,name,district_code,district_name
330402007,建设街道,330402,南湖区
330402008,解放街道,330402,南湖区
330483100,乌镇镇,330483,桐乡市
330483101,濮院镇,330483,桐乡市
";

fn csv_error(csv: &str) -> String {
    Gazetteer::parse("townships.csv", csv, "places.toml", "")
        .unwrap_err()
        .to_string()
}

fn toml_error(places: &str) -> String {
    Gazetteer::parse("townships.csv", GOOD_CSV, "places.toml", places)
        .unwrap_err()
        .to_string()
}

#[test]
fn good_files_load() {
    let geo = Gazetteer::parse("townships.csv", GOOD_CSV, "places.toml", "").unwrap();
    assert_eq!(geo.len(), 4);
    assert_eq!(
        geo.dictionary_words(),
        [
            "建设街道",
            "解放街道",
            "乌镇镇",
            "濮院镇",
            "南湖区",
            "桐乡市"
        ]
    );
}

#[test]
fn csv_bad_code() {
    let csv = GOOD_CSV.replace("330402008,", "33040200X,");
    assert_eq!(
        csv_error(&csv),
        "townships.csv:3:1: township code \"33040200X\" is not a 9-digit statistical code"
    );
}

#[test]
fn csv_wrong_column_count() {
    let csv = GOOD_CSV.replace(
        "330402008,解放街道,330402,南湖区",
        "330402008,解放街道,330402",
    );
    assert_eq!(
        csv_error(&csv),
        "townships.csv:3:1: expected 4 fields (code,name,district_code,district_name), found 3"
    );
}

#[test]
fn csv_duplicate_code() {
    let csv = GOOD_CSV.replace("330402008,", "330402007,");
    assert_eq!(
        csv_error(&csv),
        "townships.csv:3:1: duplicate township code 330402007 (first on line 2)"
    );
}

#[test]
fn csv_district_code_not_a_prefix() {
    let csv = GOOD_CSV.replace("330402008,解放街道,330402,", "330402008,解放街道,330411,");
    // The column counts characters: 330402008,解放街道, is 15 of them.
    assert_eq!(
        csv_error(&csv),
        "townships.csv:3:16: district code 330411 is not the prefix of township code 330402008"
    );
}

#[test]
fn csv_district_renamed_and_bad_header() {
    let csv = GOOD_CSV.replace(
        "330402008,解放街道,330402,南湖区",
        "330402008,解放街道,330402,南湖县",
    );
    assert_eq!(
        csv_error(&csv),
        "townships.csv:3:23: district 330402 is named 南湖区 on line 2, not 南湖县"
    );
    assert_eq!(
        csv_error("id,name\n"),
        "townships.csv:1:1: expected the header `code,name,district_code,district_name`, found `id,name`"
    );
}

#[test]
fn every_csv_problem_is_reported_in_order() {
    let csv = "code,name,district_code,district_name
33040200X,建设街道,330402,南湖区
330402008,,330402,南湖区
330402009,新嘉街道,33040,南湖区
";
    let err = Gazetteer::parse("townships.csv", csv, "places.toml", "").unwrap_err();
    let GeoError::Invalid(diags) = &err else {
        unreachable!()
    };
    assert_eq!(diags.len(), 3, "{err}");
    assert_eq!(
        err.to_string(),
        "townships.csv:2:1: township code \"33040200X\" is not a 9-digit statistical code\n\
         townships.csv:3:11: empty name\n\
         townships.csv:4:16: district code \"33040\" is not a 6-digit statistical code"
    );
    assert!(matches!(
        diags[1].problem,
        Problem::EmptyField { field: "name" }
    ));
}

#[test]
fn toml_unknown_key() {
    let places =
        "[district.330483]\nnames = [\"桐乡\"]\n\n[township.330483100]\n  alias = [\"乌镇\"]\n";
    assert_eq!(
        toml_error(places),
        "places.toml:5:3: unknown field `alias`, expected one of \
         `aliases`, `strict`, `shared`, `places`, `not`"
    );
    let top = "support_after = [\"镇\"]\n[townships.330483100]\n";
    assert_eq!(
        toml_error(top),
        "places.toml:2:2: unknown field `townships`, expected one of \
         `support_after`, `district`, `township`"
    );
}

#[test]
fn toml_syntax_error_has_a_place() {
    assert_eq!(
        toml_error("[township.330483100]\naliases = [\"乌镇\"\n"),
        "places.toml:2:16: unclosed array, expected `]`"
    );
}

#[test]
fn toml_unknown_codes() {
    let places = "[township.330483100]\naliases = [\"乌镇\"]\n\n[township.330499999]\naliases = [\"某地\"]\n\n[district.330499]\nnames = [\"某县\"]\n\n[township.3304]\n";
    assert_eq!(
        toml_error(places),
        "places.toml:4:11: no township 330499999 in townships.csv\n\
         places.toml:7:11: no district 330499 in townships.csv\n\
         places.toml:10:11: township code \"3304\" is not a 9-digit statistical code"
    );
}

#[test]
fn toml_same_alias_for_two_townships() {
    let places = "[township.330483100]\naliases = [\"乌镇\"]\n\n[township.330483101]\naliases = [\"濮院\", \"乌镇\"]\n";
    assert_eq!(
        toml_error(places),
        "places.toml:5:18: \"乌镇\" is already a name of township 330483100 乌镇镇; \
         a word may name only one place (list it under `shared` in every township that uses it)"
    );
    // An alias may not take another place's official name either.
    let places = "[township.330483101]\naliases = [\"桐乡市\"]\n";
    assert_eq!(
        toml_error(places),
        "places.toml:2:12: \"桐乡市\" is already a name of district 330483 桐乡市; \
         a word may name only one place (list it under `shared` in every township that uses it)"
    );
}

#[test]
fn shared_alias_is_allowed_only_when_shared_everywhere() {
    let shared =
        "[township.330483100]\nshared = [\"东栅\"]\n[township.330402007]\nshared = [\"东栅\"]\n";
    assert!(Gazetteer::parse("townships.csv", GOOD_CSV, "places.toml", shared).is_ok());
    let half =
        "[township.330483100]\nshared = [\"东栅\"]\n[township.330402007]\nstrict = [\"东栅\"]\n";
    assert_eq!(
        toml_error(half),
        "places.toml:4:11: \"东栅\" is already a name of township 330483100 乌镇镇; \
         a word may name only one place (list it under `shared` in every township that uses it)"
    );
}

#[test]
fn not_word_must_hide_a_name_of_its_township() {
    let places = "[township.330483100]\naliases = [\"乌镇\"]\nnot = [\"乌镇人\", \"濮院人\"]\n";
    assert_eq!(
        toml_error(places),
        "places.toml:3:15: `not` word \"濮院人\" contains no name of 330483100 乌镇镇, \
         so it can never apply"
    );
}

#[test]
fn empty_words_are_errors() {
    assert_eq!(
        toml_error("[township.330483100]\naliases = [\"\"]\n"),
        "places.toml:2:12: empty name"
    );
}

#[test]
fn csv_and_toml_problems_are_reported_together() {
    let csv = GOOD_CSV.replace("330402008,", "3304,");
    let err =
        Gazetteer::parse("townships.csv", &csv, "places.toml", "[district.330499]\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "townships.csv:3:1: township code \"3304\" is not a 9-digit statistical code\n\
         places.toml:1:11: no district 330499 in townships.csv"
    );
    assert_eq!(err.diagnostics().len(), 2);
}

#[test]
fn garbage_never_panics() {
    let inputs = [
        "",
        "\"",
        "code,name,district_code,district_name\n\"unterminated",
        "code,name,district_code,district_name\n,,,\n,,\n\n",
        "code,name,district_code,district_name\n３３０４０２００７,建设街道,330402,南湖区\n",
        "\u{feff}code,name,district_code,district_name\n330402007,建设街道,330402,南湖区\n",
    ];
    for csv in inputs {
        let _ = Gazetteer::parse("t.csv", csv, "p.toml", "");
        let _ = Gazetteer::parse("t.csv", GOOD_CSV, "p.toml", csv);
    }
    for places in [
        "[",
        "township = 3",
        "[township]\nx=1",
        "[township.330483100]\naliases = 3",
    ] {
        assert!(Gazetteer::parse("t.csv", GOOD_CSV, "p.toml", places).is_err());
    }
    // A BOM before the header is tolerated.
    assert!(Gazetteer::parse("t.csv", inputs[5], "p.toml", "").is_ok());
}
