//! rules/places.dict keeps every place word whole for the segmenter.

use std::collections::HashSet;

use crate::{CSV, DICT, GEO, PLACES};

/// The words of places.dict, checking each line's `word freq tag` shape.
fn dict_words() -> HashSet<&'static str> {
    let mut words = HashSet::new();
    for (i, line) in DICT.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            fields.len(),
            3,
            "places.dict:{}: want `word freq tag`: {line}",
            i + 1
        );
        assert!(
            fields[1].parse::<u32>().is_ok(),
            "places.dict:{}: frequency is not a number: {line}",
            i + 1
        );
        assert!(
            words.insert(fields[0]),
            "places.dict:{}: {} twice",
            i + 1,
            fields[0]
        );
    }
    words
}

#[test]
fn dict_has_every_name_of_the_csv() {
    let dict = dict_words();
    let mut missing = Vec::new();
    for line in CSV.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        for name in [fields[1], fields[3]] {
            if !dict.contains(name) && !missing.contains(&name) {
                missing.push(name);
            }
        }
    }
    assert!(missing.is_empty(), "missing from places.dict: {missing:?}");
}

#[test]
fn dict_has_every_word_of_places_toml() {
    let dict = dict_words();
    let places: toml::Table = toml::from_str(PLACES).unwrap();
    let mut missing = Vec::new();
    for (section, keys) in [
        ("district", &["names"][..]),
        ("township", &["aliases", "strict", "shared", "places"][..]),
    ] {
        for (_, entry) in places[section].as_table().unwrap() {
            for key in keys {
                for word in entry
                    .get(*key)
                    .and_then(|v| v.as_array())
                    .into_iter()
                    .flatten()
                {
                    let word = word.as_str().unwrap();
                    if !dict.contains(word) {
                        missing.push(word.to_owned());
                    }
                }
            }
        }
    }
    assert!(missing.is_empty(), "missing from places.dict: {missing:?}");
}

#[test]
fn dict_has_every_dictionary_word_and_nothing_else() {
    let dict = dict_words();
    let words: HashSet<&str> = GEO.dictionary_words().into_iter().collect();
    let missing: Vec<_> = words.difference(&dict).collect();
    let extra: Vec<_> = dict.difference(&words).collect();
    assert!(missing.is_empty(), "missing from places.dict: {missing:?}");
    assert!(
        extra.is_empty(),
        "in places.dict but no place word: {extra:?}"
    );
}

#[test]
fn dictionary_words_leave_out_not_words() {
    let words = GEO.dictionary_words();
    // 大麻 is a drug as often as a town: a `strict` short form, it is a
    // word of the dictionary but counts as 大麻镇 only when supported
    // ("桐乡大麻", "大麻村"); see the resolution tests.
    for word in ["乌镇镇", "乌镇", "大麻镇", "大麻", "海宁", "长安", "南北湖"] {
        assert!(words.contains(&word), "{word}");
    }
    for word in ["长安汽车", "王店长", "位于城"] {
        assert!(!words.contains(&word), "{word}");
    }
}
