//! Ordinary words that contain a short form must not place a call.

use crate::{check_all, code, text_code};

#[test]
fn ordinary_words_resolve_nothing() {
    check_all(
        &[
            ("河上那座大桥边有人钓鱼", None),
            ("我开的长安汽车被人刮了", None),
            ("海宁长安汽车4S店", None),
            ("他开长安福特", None),
            ("万达新城门口有人打架", None),
            ("解放路上有辆车抛锚了", None),
            ("建设银行门口", None),
            ("城南那边有个菜场", None),
            ("小孩抓了只七星瓢虫", None),
            ("梧桐树倒了压住了车", None),
            ("大好河山", None),
            ("石门坎上坐着一个老人", None),
            ("惠民政策怎么申请", None),
            ("新兴产业园的厂", None),
            ("百步之内都能闻到", None),
            ("望海楼", None),
            ("长水路上", None),
            ("新丰收的稻谷", None),
            ("罗星说他明天来", None),
            ("我们王店长说不退", None),
            ("许村长来调解过", None),
            ("这个厂位于城镇中心", None),
            ("属于城乡结合部", None),
            ("关于城镇职工医保的问题", None),
            ("租了个新仓库被人撬了", None),
        ],
        text_code,
    );
}

#[test]
fn location_district_does_not_make_a_strict_form_count() {
    // 南湖区 in the location is context, not support: 大桥 here is a bridge.
    assert_eq!(code(Some("南湖区"), "河上那座大桥边有人钓鱼"), None);
}
