//! Text normalisation: one form for every way a call's text arrives.

/// Normalises a call's text for matching: 繁體 → simplified Chinese (with
/// OpenCC's phrase tables), full-width ASCII letters, digits and
/// punctuation → ASCII, the ideographic space → a space.
///
/// ```
/// assert_eq!(minsheng_classify::normalize("報案：ＡＢ１２３，電動車"), "报案:AB123,电动车");
/// ```
pub fn normalize(text: &str) -> String {
    let folded: String = text.chars().map(fold_width).collect();
    zhconv::zhconv(&folded, zhconv::Variant::ZhHans)
}

/// Folds one full-width character (U+FF01–U+FF5E, U+3000) to ASCII.
fn fold_width(c: char) -> char {
    match c {
        '\u{3000}' => ' ',
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn traditional_becomes_simplified() {
        assert_eq!(
            normalize("隔壁裝修從早上七點開始砸牆，現在還在砸"),
            "隔壁装修从早上七点开始砸墙,现在还在砸"
        );
        assert_eq!(
            normalize("我想問一下共享法庭可以線上立案嗎"),
            "我想问一下共享法庭可以线上立案吗"
        );
    }

    #[test]
    fn full_width_folds_and_simplified_is_untouched() {
        assert_eq!(normalize("车牌浙Ｆ·Ａ３Ｂ２１　快来"), "车牌浙F·A3B21 快来");
        let simplified = "来电人称楼上漏水。没有动手";
        assert_eq!(normalize(simplified), simplified);
    }
}
