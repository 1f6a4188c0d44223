//! Which township wins when a string names several, and longest-match cases.

use crate::{check_all, code, text_code};

#[test]
fn longest_match_wins() {
    check_all(
        &[
            ("西塘桥", Some("330424002")),
            ("西塘", Some("330421103")),
            ("海盐西塘桥这边", Some("330424002")),
            ("乌镇镇", Some("330483100")),
            ("海宁市长安镇", Some("330481103")),
            ("南湖区南湖街道", Some("330402010")),
        ],
        text_code,
    );
}

#[test]
fn full_name_beats_short_form() {
    // The full name wins even when the short form comes first.
    assert_eq!(
        text_code("我住在乌镇,在崇福镇上班"),
        Some("330483107".into())
    );
}

#[test]
fn district_and_short_form_beat_short_form_alone() {
    assert_eq!(
        text_code("之前在乌镇,现在在桐乡濮院"),
        Some("330483101".into())
    );
}

#[test]
fn first_mention_wins_among_equals() {
    assert_eq!(text_code("我住在乌镇,在濮院上班"), Some("330483100".into()));
    assert_eq!(text_code("我住在濮院,在乌镇上班"), Some("330483101".into()));
    assert_eq!(text_code("从崇福镇到洲泉镇"), Some("330483107".into()));
}

#[test]
fn a_named_district_breaks_ties() {
    // 乌镇 comes first, but the call names 海宁, where 硖石 is.
    assert_eq!(
        text_code("乌镇和硖石之间,我在海宁这边"),
        Some("330481001".into())
    );
    // The district may come from the location field.
    assert_eq!(
        code(Some("海宁市"), "乌镇和硖石之间"),
        Some("330481001".into())
    );
}

#[test]
fn a_district_alone_gives_no_township() {
    check_all(
        &[
            ("我在秀洲区这边,楼下有人在卖菜", None),
            ("嘉善县一个工地上有人掉下来了", None),
            ("来电人称其在桐乡市做羊毛衫生意", None),
            ("我现在回平湖工作了", None),
            ("在南湖边散步", None),
            ("海宁的长安", None),
        ],
        text_code,
    );
}
