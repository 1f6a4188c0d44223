//! The rule language's semantics, on a small fixture rule set
//! (tests/fixtures/mini): matching, negation, precedence, fallback,
//! explanation, township queues and transfers.

use std::sync::OnceLock;

use minsheng_classify::Classifier;
use minsheng_core::{Call, Hotline, MatchKind, Urgency};

use super::support::{classifier, fixture};

fn call(text: &str) -> Call {
    Call {
        id: Some("t-1".into()),
        hotline: Hotline::Police110,
        text: text.into(),
        location: None,
        township: None,
    }
}

/// The mini classifier, built once for the module.
fn mini() -> &'static Classifier {
    static C: OnceLock<Classifier> = OnceLock::new();
    C.get_or_init(|| classifier(&fixture("mini")))
}

fn classify(text: &str) -> minsheng_core::Decision {
    mini().classify(&call(text))
}

fn fired(d: &minsheng_core::Decision) -> Vec<&str> {
    d.fired.iter().map(|f| f.id.as_str()).collect()
}

#[test]
fn a_weapon_token_fires_police_with_its_span() {
    let d = classify("邻居吵架，他拿刀了");
    assert_eq!(d.destination, "police");
    assert_eq!(d.urgency, Urgency::Critical);
    let rule = &d.fired[0];
    assert_eq!(rule.id, "police.danger");
    let spans: Vec<(&str, &str, MatchKind, usize, usize)> = rule
        .matches
        .iter()
        .map(|m| {
            (
                m.condition.as_str(),
                m.text.as_str(),
                m.kind,
                m.start,
                m.end,
            )
        })
        .collect();
    // "拿刀" by the pattern and "刀" as a token, both through @danger ⊃ @weapon.
    assert_eq!(
        spans,
        [
            ("@danger", "拿刀", MatchKind::Regex, 6, 8),
            ("@danger", "刀", MatchKind::Token, 7, 8)
        ]
    );
    assert_eq!(d.normalized_text, "邻居吵架,他拿刀了");
}

#[test]
fn a_phrase_across_tokens_matches_on_the_text() {
    let d = classify("他手里拿着切菜的大刀在楼道里");
    assert_eq!(d.destination, "police");
    assert!(
        d.fired[0]
            .matches
            .iter()
            .any(|m| m.kind == MatchKind::Phrase && m.text == "切菜的大刀"),
        "{:?}",
        d.fired
    );
}

#[test]
fn a_keyword_inside_a_longer_token_does_not_match() {
    // 刀削面 is one token: the token 刀 is not there.
    let d = classify("楼下新开的刀削面馆排队的人很多");
    assert_ne!(d.destination, "police", "{:?}", d.fired);
}

#[test]
fn negation_cancels_a_nearby_keyword_and_is_explained() {
    let d = classify("两个人在路边吵，没人受伤");
    assert_ne!(d.destination, "police", "{:?}", d.fired);
    let negated: Vec<(&str, &str)> = d
        .negated
        .iter()
        .map(|n| (n.text.as_str(), n.negator.as_str()))
        .collect();
    assert_eq!(negated, [("人受伤", "没人"), ("受伤", "没人")]);
}

#[test]
fn a_pattern_starting_inside_a_negating_token_is_negated() {
    // 没人 is one token; the pattern 人流血 starts inside it.
    let d = classify("路上没人流血");
    assert_ne!(d.destination, "police", "{:?}", d.fired);
    assert!(
        d.negated
            .iter()
            .any(|n| n.text == "人流血" && n.negator == "没人"),
        "{:?}",
        d.negated
    );
}

#[test]
fn negation_does_not_cross_a_clause_break() {
    let d = classify("刚才没注意，现在有人受伤了");
    assert_eq!(d.destination, "police");
    assert!(d.negated.is_empty());
}

#[test]
fn a_mistaken_belief_cancels_the_rest_of_its_clause_only() {
    let d = classify("我还以为是有人拿着一把菜刀，原来是雨伞");
    assert_ne!(d.destination, "police", "{:?}", d.fired);
    assert!(
        d.negated.iter().all(|n| n.negator == "以为"),
        "{:?}",
        d.negated
    );
    // Beyond the window of an ordinary negator, still in the clause.
    assert!(
        d.negated.iter().any(|n| n.text == "菜刀"),
        "{:?}",
        d.negated
    );
    let d = classify("我以为他开玩笑，结果他真拿了把菜刀");
    assert_eq!(d.destination, "police", "the next clause is not a belief");
}

#[test]
fn a_retraction_takes_back_its_sentence_only() {
    let d = classify("楼道里有人拿着菜刀……哦不是，是对门在杀鱼");
    assert_ne!(d.destination, "police", "{:?}", d.fired);
    assert!(
        d.negated.iter().any(|n| n.text == "菜刀"),
        "{:?}",
        d.negated
    );
    // Far before the retraction, across clauses, still in its sentence.
    let d = classify("我要说的是，刚才楼下有个人受伤了，流了好多血，说错了，是番茄酱");
    assert_ne!(d.destination, "police", "{:?}", d.fired);
    // A sentence before it stands, and so does what comes after it.
    let d = classify("有人拿着菜刀。刚才说的树倒了，哦不是，是电线杆");
    assert_eq!(d.destination, "police", "{:?}", d.negated);
    let d = classify("哦不是吵架，他拿着菜刀");
    assert_eq!(d.destination, "police", "{:?}", d.negated);
    // Opening its sentence, it takes back the sentence before, and no more.
    let d = classify("楼下有人拿着菜刀！……哦不是，是对门在杀鱼");
    assert_ne!(d.destination, "police", "{:?}", d.fired);
    let d = classify("刚才有人受伤了。楼下有人拿着菜刀！哦不是，是在杀鱼");
    assert_eq!(d.destination, "police", "{:?}", d.negated);
}

#[test]
fn negation_reaches_only_its_window() {
    // 没 is more than three tokens before 流血.
    let d = classify("我没想到他会这样打得我流血");
    assert_eq!(d.destination, "police", "{:?}", d.negated);
}

#[test]
fn escalation_beats_de_escalation_by_precedence() {
    let d = classify("本来只是吵架，现在他拿了根铁棍");
    assert_eq!(d.destination, "police");
    assert_eq!(fired(&d), ["police.danger", "township.quarrel-now"]);
    let township = d
        .scores
        .iter()
        .find(|s| s.destination == "township")
        .unwrap();
    assert_eq!(township.score, 1.0);
}

#[test]
fn all_needs_every_condition() {
    assert_eq!(classify("他们现在在楼下吵架").destination, "township");
    let d = classify("他们昨天吵架了");
    assert_eq!(d.destination, "hotline_12345");
    assert!(d.needs_review, "nothing fired: the fallback flags review");
}

#[test]
fn none_vetoes_a_rule() {
    let d = classify("孩子拿着玩具刀在玩");
    assert_ne!(d.destination, "police", "{:?}", d.fired);
}

#[test]
fn unless_cancels_only_the_hits_it_covers() {
    assert_eq!(classify("他又在打她").destination, "police");
    let phone = classify("我打她电话没人接");
    assert_ne!(phone.destination, "police", "{:?}", phone.fired);
    let both = classify("我打她电话，她说他在打她");
    assert_eq!(both.destination, "police");
    let hit = &both
        .fired
        .iter()
        .find(|f| f.id == "police.hit")
        .unwrap()
        .matches;
    assert_eq!(
        hit.iter().map(|m| m.start).collect::<Vec<_>>(),
        [10],
        "only the hit outside the phone call counts"
    );
}

#[test]
fn a_negative_weight_pulls_a_destination_under_its_threshold() {
    let d = classify("上个月他们在楼道里吵，现在还在吵");
    assert_eq!(d.destination, "hotline_12345");
    assert_eq!(fired(&d), ["township.quarrel-now", "hotline.not-now"]);
}

#[test]
fn rules_on_one_situation_do_not_add_up_but_counter_evidence_counts() {
    let d = classify("现在楼上在吵架，吵死了");
    let township = d
        .scores
        .iter()
        .find(|s| s.destination == "township")
        .unwrap();
    assert_eq!(
        township.score, 1.0,
        "the strongest rule counts, not the sum of two"
    );
    assert_eq!(d.destination, "township");
    let past = classify("上个月开始楼上就吵，现在还在吵，吵死了");
    assert_eq!(
        fired(&past),
        ["township.quarrel-now", "hotline.not-now", "township.noise"]
    );
    assert_eq!(
        past.destination, "hotline_12345",
        "1 (strongest) - 1 (counter-evidence) is under the threshold"
    );
}

#[test]
fn nothing_fired_goes_to_the_fallback_for_review_never_police() {
    let d = classify("你好，我想问一下");
    assert_eq!(d.destination, "hotline_12345");
    assert!(d.needs_review);
    assert_eq!(d.confidence, 0.0);
    assert!(d.fired.is_empty());
}

#[test]
fn a_weak_rule_routes_to_police_and_asks_for_review() {
    let d = classify("门口有人打架");
    assert_eq!(d.destination, "police");
    assert!(d.needs_review);
    assert_eq!(d.urgency, Urgency::Urgent);
}

#[test]
fn review_is_asked_only_when_the_decision_rests_on_weak_signals() {
    let strong = classify("门口有人打架，还拿了刀");
    assert_eq!(strong.destination, "police");
    assert!(
        !strong.needs_review,
        "a weapon is no weak signal: {:?}",
        strong.fired
    );
    let passed_over = classify("门口有个可疑的人，他们现在在吵架");
    assert_eq!(passed_over.destination, "township");
    assert!(
        passed_over.needs_review,
        "a weak danger signal was outweighed"
    );
    let plain = classify("他们现在在楼下吵架");
    assert!(!plain.needs_review);
}

#[test]
fn dialect_phrases_are_rewritten_before_matching() {
    let d = classify("门口两个人勒打相打");
    assert_eq!(d.destination, "police", "{:?}", d.fired);
    assert_eq!(d.normalized_text, "门口两个人勒打架");
    assert_eq!(d.fired[0].matches[0].text, "打架");
}

#[test]
fn traditional_and_full_width_text_is_normalised_first() {
    let d = classify("鄰居現在在吵架，他拿了一把菜刀！");
    assert_eq!(d.destination, "police");
    assert_eq!(d.normalized_text, "邻居现在在吵架,他拿了一把菜刀!");
}

#[test]
fn township_calls_queue_by_township_and_record_the_transfer() {
    let c = mini();
    let placed = c.classify(&Call {
        location: Some("桐乡市乌镇镇石佛南路".into()),
        ..call("楼上现在在吵架")
    });
    assert_eq!(placed.destination, "township");
    assert_eq!(placed.queue, "township.330483100");
    assert_eq!(
        placed.township.as_ref().map(|t| t.code.as_str()),
        Some("330483100")
    );
    assert_eq!(
        placed.transfer.as_ref().map(|t| t.label.as_str()),
        Some("110→基层")
    );

    let told = c.classify(&Call {
        location: Some("桐乡市乌镇镇石佛南路".into()),
        township: Some("330402008".parse().unwrap()),
        ..call("楼上现在在吵架")
    });
    assert_eq!(
        (
            told.queue.as_str(),
            told.township.as_ref().map(|t| t.source)
        ),
        (
            "township.330402008",
            Some(minsheng_core::PlaceSource::Operator)
        ),
        "the operator system's township code wins over the address"
    );
    assert!(c.queues().contains(&"township.330402008".to_string()));
    assert!(c.queues().contains(&"township.unassigned".to_string()));

    let unplaced = c.classify(&call("楼上现在在吵架"));
    assert_eq!(
        unplaced.destination, "township",
        "a missing address never changes the destination"
    );
    assert_eq!(unplaced.queue, "township.unassigned");

    let own = c.classify(&Call {
        hotline: Hotline::Gov12345,
        ..call("社保怎么交")
    });
    assert_eq!(own.destination, "hotline_12345");
    assert!(
        own.transfer.is_none(),
        "a 12345 call kept by 12345 is no transfer"
    );
    let to_police = c.classify(&Call {
        hotline: Hotline::Gov12345,
        ..call("有人拿刀")
    });
    assert_eq!(
        to_police.transfer.as_ref().map(|t| t.label.as_str()),
        Some("12345→110")
    );
}

#[test]
fn the_decision_carries_scores_version_and_confidence() {
    let c = mini();
    let d = c.classify(&call("有人拿刀，还有人要起诉"));
    let scores: Vec<(&str, f64)> = d
        .scores
        .iter()
        .map(|s| (s.destination.as_str(), s.score))
        .collect();
    assert_eq!(
        scores,
        [
            ("police", 2.0),
            ("court", 1.0),
            ("township", 0.0),
            ("hotline_12345", 0.0)
        ]
    );
    assert_eq!(d.rules_version, c.rules().version);
    assert_eq!(d.rules_version.len(), 64);
    // (1 - e^-2) * 2/3
    assert!((d.confidence - 0.576).abs() < 0.001, "{}", d.confidence);
    assert_eq!(d.id.as_deref(), Some("t-1"));
}

#[test]
fn the_split_keyword_lint_names_the_dictionary_fix() {
    let lint: Vec<String> = mini().lint().iter().map(|d| d.to_string()).collect();
    assert_eq!(
        lint,
        Vec::<String>::new(),
        "the mini set keeps its keywords whole"
    );
    let dir = tempdir_with_rule(
        "[[rule]]\nid = \"x.split\"\ndescription = \"d\"\ndestination = \"police\"\ncategory = \"c\"\nurgency = \"urgent\"\nall = [\"拿刀砍人\"]\n",
    );
    let c = classifier(dir.path());
    let lint: Vec<String> = c.lint().iter().map(|d| d.to_string()).collect();
    assert_eq!(lint.len(), 2, "{lint:#?}");
    assert!(lint[0].ends_with("R101: keyword `拿刀砍人` is cut into 拿/刀/砍/人 by the segmenter, so it never matches as a token"), "{}", lint[0]);
    assert!(
        lint[1].contains("R008: rule `x.split` can never fire"),
        "{}",
        lint[1]
    );
}

#[test]
fn a_rewrite_that_normalisation_changes_first_is_named() {
    // 嘸 and 開 are turned into 呒 and 开 before any rewrite runs.
    let dir = tempdir_with_rule("[[rewrite]]\nfrom = [\"嘸轉來\"]\nto = \"没回来\"\n");
    let lint: Vec<String> = classifier(dir.path())
        .lint()
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(lint.len(), 1, "{lint:#?}");
    assert!(
        lint[0].ends_with("R106: rewrite `嘸轉來` can never match: normalisation turns it into `呒转来` before rewrites run"),
        "{}",
        lint[0]
    );
}

/// A copy of the mini fixture with one extra rule file.
fn tempdir_with_rule(extra: &str) -> tempfile::TempDir {
    let dir = super::support::mini_copy();
    std::fs::write(dir.path().join("extra.toml"), extra).unwrap();
    dir
}

#[test]
fn a_pattern_runs_where_its_start_and_its_end_are_both_seen() {
    let c = mini();
    let d = c.classify(&call("他用锤子砸门"));
    assert_eq!(d.destination, "police");
    let m = &d
        .fired
        .iter()
        .find(|f| f.id == "police.smashing")
        .unwrap()
        .matches[0];
    assert_eq!((m.text.as_str(), m.start, m.end), ("用锤子砸门", 1, 6));
    // The end of a match before its start is no match.
    let d = c.classify(&call("他砸门，后来用了锤子"));
    assert!(
        d.fired.iter().all(|f| f.id != "police.smashing"),
        "{:?}",
        d.fired
    );
}

#[test]
fn patterns_with_look_around_or_without_a_known_start_match_too() {
    // A pattern gated by its prefixes runs on a forward DFA anchored where
    // the prefix was seen; one that looks around (^) or has no finite set
    // of prefixes runs on the full engine. All three report their spans.
    let dir = tempdir_with_rule(
        "[[rule]]\nid = \"police.engines\"\ndescription = \"three engines\"\ndestination = \"police\"\ncategory = \"治安\"\nurgency = \"urgent\"\nany = [{ regex = '^有人(翻墙|撬门)' }, { regex = '.{1,2}在撬锁' }, { regex = '(拿着|举着)[^，。,.]{0,6}铁锹' }]\n",
    );
    let c = classifier(dir.path());
    let spans = |text: &str| -> Vec<(String, usize, usize)> {
        c.classify(&call(text))
            .fired
            .iter()
            .filter(|f| f.id == "police.engines")
            .flat_map(|f| f.matches.iter().map(|m| (m.text.clone(), m.start, m.end)))
            .collect()
    };
    assert_eq!(spans("有人翻墙进来"), [("有人翻墙".to_owned(), 0, 4)]);
    // ^ is the start of the text only.
    assert_eq!(spans("刚才有人翻墙"), []);
    assert_eq!(spans("门外两人在撬锁"), [("两人在撬锁".to_owned(), 2, 7)]);
    assert_eq!(spans("他举着一把铁锹"), [("举着一把铁锹".to_owned(), 1, 7)]);
    assert_eq!(spans("他举着伞，铁锹在墙角"), []);
}

#[test]
fn a_pattern_too_big_to_build_is_an_error_at_its_place_not_a_panic() {
    // Well formed (it parses), but a million repetitions of a class is
    // over the size limit of the regular expression engine.
    let dir = tempdir_with_rule(
        "[[rule]]\nid = \"police.huge\"\ndescription = \"too big\"\ndestination = \"police\"\ncategory = \"治安\"\nurgency = \"urgent\"\nany = [{ regex = '(?:砍\\w{1000}){1000}' }]\n",
    );
    let checked = minsheng_rules::compile(minsheng_rules::read_dir(dir.path()).unwrap());
    let rules = checked
        .rule_set
        .expect("the rule compiler only parses patterns");
    let err = Classifier::new(rules).expect_err("the matcher cannot build it");
    let d = &err.diagnostics[0];
    assert_eq!(d.code.as_str(), "R005");
    assert!(d.message.contains("cannot be built"), "{}", d.message);
    assert!(d.render().contains("extra.toml:7:"), "{}", d.render());
}
