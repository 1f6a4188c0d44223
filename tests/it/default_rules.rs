//! The default rule set (rules/): its examples, its dictionary and its
//! quality on the shared labelled corpus.

use std::sync::OnceLock;

use minsheng_classify::Classifier;
use minsheng_core::{Call, Hotline};

use super::support::{classifier, root};

fn default() -> &'static Classifier {
    static C: OnceLock<Classifier> = OnceLock::new();
    C.get_or_init(|| classifier(&root().join("rules")))
}

#[test]
fn every_example_call_in_the_rule_files_goes_where_it_must() {
    let (total, failures) = minsheng_classify::examples::run(default());
    let shown: Vec<String> = failures
        .iter()
        .map(|f| format!("{}: {} — {}", f.location(), f.problem, f.example.text))
        .collect();
    assert!(
        total >= 300,
        "the rule files carry their examples ({total})"
    );
    assert!(
        shown.is_empty(),
        "{} of {total} examples fail:\n{}",
        shown.len(),
        shown.join("\n")
    );
}

#[test]
fn every_township_and_district_name_comes_out_as_one_token() {
    let csv = std::fs::read_to_string(root().join("rules/townships.csv")).unwrap();
    let seg = default().segmenter();
    for line in csv.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        for name in [fields[1], fields[3]] {
            let toks: Vec<&str> = seg.cut(name).iter().map(|t| t.text).collect();
            assert_eq!(toks, [name], "{name} must stay whole");
        }
    }
    for word in ["取款手", "民声一键办", "共享法庭", "司法确认", "电动车"] {
        let toks: Vec<&str> = seg.cut(word).iter().map(|t| t.text).collect();
        assert_eq!(toks, [word]);
    }
    // And in a sentence, where a neighbouring character could pull them apart.
    let toks: Vec<&str> = seg
        .cut("他是取款手，骑电动车去共享法庭申请司法确认")
        .iter()
        .map(|t| t.text)
        .collect();
    assert_eq!(
        toks,
        [
            "他",
            "是",
            "取款手",
            "，",
            "骑",
            "电动车",
            "去",
            "共享法庭",
            "申请",
            "司法确认"
        ]
    );
}

#[test]
fn escalation_and_negation_both_ways() {
    let c = default();
    let go = |text: &str| {
        c.classify(&Call {
            hotline: Hotline::Police110,
            text: text.into(),
            ..Call::default()
        })
        .destination
    };
    assert_eq!(go("邻居吵架，他拿刀了"), "police");
    assert_eq!(
        go("邻居在楼道里吵架，没有打起来，就是吵，想让人来劝劝"),
        "township"
    );
    assert_eq!(
        go("路口两辆车撞了，没人受伤，双方在等交警"),
        "police",
        "a traffic accident is police even without injury"
    );
    assert_eq!(go("本来只是吵，刚才他拿了根铁棍出来"), "police");
}

/// The shared labelled corpus, when the checkout sits beside shared/.
fn dev_corpus() -> Option<String> {
    let path = root().join("../shared/corpus/dev.jsonl");
    match std::fs::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!(
                "\n*** SKIPPED: {} not readable ({e}); the quality floor was NOT checked ***\n",
                path.display()
            );
            None
        }
    }
}

/// Measures the default rules on a labelled corpus.
fn measure(name: &str, text: &str) -> minsheng_classify::eval::Report {
    let c = default();
    let names = c
        .rules()
        .destinations
        .iter()
        .map(|d| d.name.clone())
        .collect();
    let mut eval = minsheng_classify::eval::Evaluation::new(names, Some("township".into()));
    for (_, line) in minsheng_classify::eval::read_corpus(name, text) {
        let line = line.unwrap_or_else(|e| panic!("{e}"));
        eval.record(line.expected.as_ref().unwrap(), &c.classify(&line.call()));
    }
    eval.report(1.0)
}

/// A floor under the measured quality, so that a rule change that loses
/// emergencies fails here. The figures the rules reach, and the honest
/// ones on calls they had never seen, are in BENCHMARKS.md.
fn assert_floor(r: &minsheng_classify::eval::Report, what: &str) {
    let police = &r.per_destination["police"];
    assert!(r.accuracy >= 0.98, "{what}: accuracy {}", r.accuracy);
    assert!(
        police.recall >= 0.99,
        "{what}: police recall {}",
        police.recall
    );
    assert!(
        police.precision >= 0.98,
        "{what}: police precision {}",
        police.precision
    );
    assert!(
        r.township_accuracy >= 0.98,
        "{what}: township accuracy {}",
        r.township_accuracy
    );
}

#[test]
fn quality_on_the_shared_corpus_does_not_fall() {
    let Some(text) = dev_corpus() else { return };
    let r = measure("dev.jsonl", &text);
    assert!(r.total >= 400);
    assert_floor(&r, "shared corpus");
}

#[test]
fn quality_on_the_projects_own_calls_does_not_fall() {
    let sets = [
        "calls-a", "calls-b", "calls-c", "calls-d", "calls-e", "calls-f", "calls-g", "calls-h",
        "calls-i", "calls-j", "calls-k", "calls-l", "calls-m", "calls-n", "calls-o", "calls-p",
        "calls-q", "calls-r", "calls-s", "calls-t", "calls-u", "calls-v", "calls-w", "calls-x",
        "calls-y", "calls-z", "calls-aa", "calls-ab", "calls-ac", "calls-ad", "calls-ae",
        "calls-af", "calls-ag", "calls-ah", "calls-ai", "calls-aj", "calls-ak", "calls-al",
        "calls-am", "calls-an", "calls-ao", "calls-ap", "calls-aq", "calls-ar", "calls-as",
        "calls-at", "calls-au", "calls-av", "calls-aw", "calls-ax", "calls-ay", "calls-az",
        "calls-ba", "calls-bb", "calls-bc", "calls-bd", "calls-be", "calls-bf", "calls-bg",
        "calls-bh", "calls-bi", "calls-bj", "calls-bk", "calls-bl", "calls-bm", "calls-bn",
        "calls-bo", "calls-bp", "calls-bq", "calls-br", "calls-bs", "calls-bt", "calls-bu",
        "calls-bv", "calls-bw", "calls-bx", "calls-by", "calls-bz", "calls-ca", "calls-cb",
        "calls-cc", "calls-cd", "calls-ce", "calls-cf", "tune-1",
    ];
    let mut text = String::new();
    for set in sets {
        let path = root().join(format!("tests/corpus/{set}.jsonl"));
        text.push_str(
            &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        );
    }
    let r = measure("tests/corpus", &text);
    assert_eq!(r.total, 14880, "every set is read");
    assert_floor(&r, "tests/corpus");
}
