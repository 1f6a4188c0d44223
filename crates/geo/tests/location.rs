//! The `location` field, as operator systems fill it.

use minsheng_core::PlaceSource;

use crate::{check_all, code, how};

#[test]
fn location_forms_resolve() {
    check_all(
        &[
            // district + short form + village
            ("桐乡市濮院群益村2组", Some("330483101")),
            ("桐乡市濮院胜利村6组88号", Some("330483101")),
            // district + full name, where the township shares the district's name
            ("南湖区南湖街道江南名苑26幢1单元603室", Some("330402010")),
            ("南湖区南湖街道学院路与兴园路交叉口", Some("330402010")),
            ("海宁市周王庙镇康乐路与人民路交叉口", Some("330481105")),
            ("王店镇红旗路", Some("330411105")),
            ("嘉善县西塘御景湾12幢", Some("330421103")),
            ("乌镇幸福路393弄19号", Some("330483100")),
            ("桐乡市乌镇镇景和路383号", Some("330483100")),
            ("西塘桥街道和平路95号", Some("330424002")),
            ("海盐县西塘桥街道学院路58号", Some("330424002")),
            ("南湖区大桥镇明珠花园28幢", Some("330402105")),
            ("大桥镇翠苑小区北门", Some("330402105")),
            // strict short form supported by its district
            ("南湖区大桥明珠花园", Some("330402105")),
            ("海宁长安某某路8号", Some("330481103")),
            ("秀洲区新城红星村12组", Some("330411002")),
            // 海宁市 then 长安镇, never 市长
            ("浙江省嘉兴市海宁市长安镇春潮路", Some("330481103")),
            ("平湖市独山港镇滨河路20号", Some("330482108")),
            ("海盐县于城镇红星村3组", Some("330424103")),
            ("城南街道吉祥路113弄18号", Some("330402012")),
            ("新城街道丰收路94号", Some("330411002")),
            ("嘉善县惠民街道永丰路259弄18号", Some("330421003")),
            ("桐乡市石门镇幸福路354号", Some("330483103")),
            ("秀洲区新塍镇翠柳路392弄17号", Some("330411104")),
            ("桐乡市大麻镇某村", Some("330483106")),
            // spaces left by the operator system
            ("海宁市 长安镇 春潮路", Some("330481103")),
            ("海宁 长安 春潮路", Some("330481103")),
            // a district alone, or nothing at all
            ("海宁市", None),
            ("嘉兴市南湖区", None),
            ("人民路与中山路交叉口", None),
            ("", None),
        ],
        |loc| code(Some(loc), ""),
    );
}

#[test]
fn location_is_read_before_the_text() {
    assert_eq!(
        code(Some("凤桥镇荷花路72号"), "我老家是乌镇镇的"),
        Some("330402100".into())
    );
    assert_eq!(
        how(Some("桐乡市濮院群益村2组"), "乌镇镇"),
        Some((PlaceSource::Location, "濮院".into()))
    );
}

#[test]
fn text_is_read_when_the_location_names_no_township() {
    assert_eq!(
        how(Some("人民路12号"), "我在崇福镇这边"),
        Some((PlaceSource::Text, "崇福镇".into()))
    );
    assert_eq!(
        how(Some("海宁市"), "硖石这边有人打架"),
        Some((PlaceSource::Text, "硖石".into()))
    );
    assert_eq!(code(Some("海宁市"), "有人打架"), None);
    assert_eq!(code(None, ""), None);
}

#[test]
fn matched_is_the_naming_word() {
    assert_eq!(
        how(None, "我在乌镇镇上"),
        Some((PlaceSource::Text, "乌镇镇".into()))
    );
    assert_eq!(
        how(None, "在乌镇开民宿"),
        Some((PlaceSource::Text, "乌镇".into()))
    );
    assert_eq!(
        how(None, "去南北湖玩"),
        Some((PlaceSource::Text, "南北湖".into()))
    );
}
