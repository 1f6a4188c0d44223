//! Text normalisation: one form for every way a call's text arrives.

/// Normalises a call's text for matching: 繁體 → simplified Chinese (with
/// OpenCC's phrase tables), full-width ASCII letters, digits and
/// punctuation → ASCII, the ideographic space → a space.
///
/// ```
/// assert_eq!(minsheng_classify::normalize("報案：ＡＢ１２３，電動車"), "报案:AB123,电动车");
/// ```
/// Personal numbers are masked here, before anything else sees the text:
/// mobile numbers keep their first three and last four digits
/// (`138****0000`), and longer runs of digits (identity and bank card
/// numbers) keep their first and last four. No rule needs the hidden
/// digits, and every decision, explanation and export then carries the
/// masked form only.
pub fn normalize(text: &str) -> String {
    let folded: String = text.chars().filter_map(fold_width).collect();
    let simplified = zhconv::zhconv(&folded, zhconv::Variant::ZhHans);
    mask_numbers(&particle_zhe(&simplified))
}

/// Words in which 著 is the simplified 著 (to write), not the particle.
const ZHU_WORDS: [&str; 12] = [
    "著名", "著作", "显著", "著称", "土著", "编著", "名著", "卓著", "著录", "原著", "巨著", "昭著",
];

/// 著 as the particle 着 (拿著, 睡不著): OpenCC keeps 著 because it is also
/// a simplified character, so callers writing in traditional characters
/// would never match 着.
fn particle_zhe(text: &str) -> String {
    if !text.contains('著') {
        return text.to_owned();
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        let is_word = c == '著'
            && ZHU_WORDS.iter().any(|w| {
                let w: Vec<char> = w.chars().collect();
                let at = w.iter().position(|&x| x == '著').unwrap_or(0);
                i >= at && chars.get(i - at..i - at + w.len()) == Some(&w[..])
            });
        out.push(if c == '著' && !is_word { '着' } else { c });
    }
    out
}

/// Masks mobile numbers and long digit runs (see [`normalize`]).
fn mask_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        let n = run.len();
        let masked = if n == 11 && run.starts_with('1') {
            format!("{}****{}", &run[..3], &run[7..])
        } else if n >= 15 {
            format!("{}{}{}", &run[..4], "*".repeat(n - 8), &run[n - 4..])
        } else {
            std::mem::take(run)
        };
        out.push_str(&masked);
        run.clear();
    };
    for c in text.chars() {
        // An identity number may end in X.
        if c.is_ascii_digit() || (c == 'X' && run.len() == 17) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Folds one full-width character (U+FF01–U+FF5E, U+3000) to ASCII;
/// control characters other than a line break become a space (a terminal
/// escape in a call's text is never shown raw), and zero-width characters
/// are dropped (拿\u{200B}刀 is 拿刀).
fn fold_width(c: char) -> Option<char> {
    match c {
        '\u{3000}' => Some(' '),
        '\u{FF01}'..='\u{FF5E}' => Some(char::from_u32(c as u32 - 0xFEE0).unwrap_or(c)),
        '\n' => Some('\n'),
        c if minsheng_core::is_invisible(c) => None,
        c if c.is_control() => Some(' '),
        _ => Some(c),
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
    fn the_particle_zhe_is_simplified_but_the_verb_is_kept() {
        assert_eq!(normalize("他拿著刀，我睡不著"), "他拿着刀,我睡不着");
        assert_eq!(normalize("著名的景區，顯著的變化"), "著名的景区,显著的变化");
    }

    #[test]
    fn personal_numbers_are_masked_and_amounts_are_not() {
        assert_eq!(
            normalize("我电话13812345678，身份证33040219800101123X，卡号6222021234567890123"),
            "我电话138****5678,身份证3304**********123X,卡号6222***********0123"
        );
        assert_eq!(
            normalize("转了38000元，车牌浙F12345，1381234567"),
            "转了38000元,车牌浙F12345,1381234567"
        );
        assert_eq!(normalize("１３８１２３４５６７８"), "138****5678");
    }

    #[test]
    fn control_characters_are_spaces_and_zero_width_ones_are_gone() {
        assert_eq!(
            normalize("有人\u{1b}[2J拿\u{200B}刀\t快来\r\n"),
            "有人 [2J拿刀 快来 \n"
        );
    }

    #[test]
    fn full_width_folds_and_simplified_is_untouched() {
        assert_eq!(normalize("车牌浙Ｆ·Ａ３Ｂ２１　快来"), "车牌浙F·A3B21 快来");
        let simplified = "来电人称楼上漏水。没有动手";
        assert_eq!(normalize(simplified), simplified);
    }
}
