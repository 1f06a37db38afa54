//! The kernel without Python: filters and their reasons, scores, tie-breaks and accounting.

use std::collections::HashMap;

use super::python::parse_config;
use super::*;

type Raw = (String, String, Vec<String>);
/// A NodeSelectorTerm: (matchExpressions, matchFields).
type Term = (Vec<Raw>, Vec<Raw>);

/// A pod as the Python side would describe it; unset fields take PodSpec's defaults.
#[derive(Default)]
struct Pod {
    requests: Vec<(&'static str, i64)>,
    node_name: &'static str,
    node_selector: Vec<(&'static str, &'static str)>,
    required: Option<Vec<Term>>,
    preferred: Vec<(i64, Term)>,
    tolerations: Vec<(&'static str, &'static str, &'static str, &'static str)>,
    ports: Vec<(&'static str, &'static str, i32)>,
    spread_key: &'static str,
}

fn owned(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn expr(key: &str, op: &str, values: &[&str]) -> Raw {
    (
        key.to_string(),
        op.to_string(),
        values.iter().map(|v| v.to_string()).collect(),
    )
}

impl Pod {
    fn spec(self) -> Spec {
        let requests: HashMap<String, i64> = self
            .requests
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let nonzero = (
            requests.get("cpu").copied().unwrap_or(100),
            requests.get("memory").copied().unwrap_or(200 * MIB),
        );
        PodSpec::py_new(
            "default".to_string(),
            None,
            self.node_name.to_string(),
            Some(requests),
            nonzero,
            Some(owned(&self.node_selector)),
            self.required,
            self.preferred,
            self.tolerations
                .iter()
                .map(|(k, o, v, e)| (k.to_string(), o.to_string(), v.to_string(), e.to_string()))
                .collect(),
            self.ports
                .iter()
                .map(|(ip, proto, port)| (ip.to_string(), proto.to_string(), *port))
                .collect(),
            Vec::new(),
            self.spread_key.to_string(),
            Vec::new(),
            Vec::new(),
        )
        .expect("pod spec")
        .spec
    }
}

/// A node with `cpu` millicores, `mem` bytes and room for `pods` pods.
fn node(cpu: i64, mem: i64, pods: i64) -> NodeData {
    NodeData {
        alloc: [cpu, mem, 0, pods],
        scalars: Vec::new(),
        labels: Vec::new(),
        taints: Vec::new(),
        unschedulable: false,
        images: Vec::new(),
    }
}

fn labelled(mut n: NodeData, labels: &[(&str, &str)]) -> NodeData {
    n.labels = owned(labels).into_iter().collect();
    n
}

fn tainted(mut n: NodeData, key: &str, effect: &str) -> NodeData {
    n.taints = vec![(key.to_string(), String::new(), effect.to_string())];
    n
}

fn default_config() -> Config {
    parse_config(None, "LeastAllocated", None, None, Vec::new()).expect("config")
}

fn table(nodes: Vec<(&str, NodeData)>) -> Table {
    let mut t = Table::new();
    for (name, data) in nodes {
        t.set_node(name, data);
    }
    t
}

/// Schedules with a fixed tie-break stream.
fn schedule(t: &Table, spec: &Spec, cfg: &Config) -> Outcome {
    t.schedule(spec, cfg, || 0)
}

fn scores(t: &Table, spec: &Spec, cfg: &Config) -> HashMap<String, [i64; 6]> {
    t.evaluate(spec, cfg)
        .into_iter()
        .filter_map(|(name, _, _, row)| row.map(|r| (name, r)))
        .collect()
}

#[test]
fn plugin_tables_agree_with_upstreams_default_profile() {
    assert_eq!(FILTERS[F_FIT], "NodeResourcesFit");
    assert_eq!(SCORES[S_SPREAD], "SelectorSpread");
    let weights: Vec<(&str, i64)> = SCORES.iter().copied().zip(DEFAULT_WEIGHTS).collect();
    assert_eq!(
        weights,
        [
            ("NodeResourcesFit", 1),
            ("NodeResourcesBalancedAllocation", 1),
            ("ImageLocality", 1),
            ("NodeAffinity", 2),
            ("TaintToleration", 3),
            ("SelectorSpread", 2),
        ]
    );
    // Every failure reason belongs to the filter that reports it.
    assert_eq!(FILTERS[plugin_of(R_PREFILTER)], "NodeAffinity");
    assert_eq!(FILTERS[plugin_of(R_EXISTING_ANTI)], "InterPodAffinity");
    assert_eq!(FILTERS[plugin_of(R_SCALAR + 3)], "NodeResourcesFit");
}

#[test]
fn each_node_reports_the_first_filter_that_rejects_it() {
    let mut cordoned = node(4000, 8 << 30, 110);
    cordoned.unschedulable = true;
    let t = table(vec![
        ("cordoned", cordoned),
        (
            "tainted",
            tainted(node(4000, 8 << 30, 110), "gpu", "NoSchedule"),
        ),
        ("small", node(500, 8 << 30, 110)),
        (
            "wrong-zone",
            labelled(node(4000, 8 << 30, 110), &[("zone", "b")]),
        ),
        ("fits", labelled(node(4000, 8 << 30, 110), &[("zone", "a")])),
    ]);
    let pod = Pod {
        requests: vec![("cpu", 1000)],
        node_selector: vec![("zone", "a")],
        ..Pod::default()
    }
    .spec();
    let cfg = default_config();
    let out = schedule(&t, &pod, &cfg);
    assert_eq!(out.node.as_deref(), Some("fits"));
    assert_eq!((out.feasible, out.nodes), (1, 5));
    // "small" also lacks the zone label, so NodeAffinity (earlier) rejects it, not Fit.
    let mut histogram = out.histogram.clone();
    histogram.sort();
    assert_eq!(
        histogram,
        [
            (
                "node(s) didn't match Pod's node affinity/selector".to_string(),
                2
            ),
            ("node(s) had untolerated taint(s)".to_string(), 1),
            ("node(s) were unschedulable".to_string(), 1),
        ]
    );
    assert_eq!(
        out.rejected_by,
        ["NodeUnschedulable", "TaintToleration", "NodeAffinity"]
    );
    assert_eq!(out.unresolvable, 4);
}

#[test]
fn resources_ports_and_pod_counts_are_accounted() {
    let mut t = table(vec![("n1", node(1000, 1 << 30, 2))]);
    let cfg = default_config();
    let web = Pod {
        requests: vec![("cpu", 600)],
        ports: vec![("", "TCP", 8080)],
        ..Pod::default()
    };
    t.add_pod("ns/web", "n1", &web.spec());
    let again = Pod {
        requests: vec![("cpu", 600)],
        ports: vec![("", "TCP", 8080)],
        ..Pod::default()
    }
    .spec();
    let out = schedule(&t, &again, &cfg);
    assert_eq!(out.node, None);
    // NodePorts runs before NodeResourcesFit and stops there; a port clash is resolvable.
    assert_eq!(
        out.histogram,
        [(
            "node(s) didn't have free ports for the requested pod ports".to_string(),
            1
        )]
    );
    assert_eq!(out.unresolvable, 0);

    let other_port = Pod {
        requests: vec![("cpu", 600)],
        ports: vec![("", "UDP", 8080)],
        ..Pod::default()
    }
    .spec();
    let out = schedule(&t, &other_port, &cfg);
    assert_eq!(out.histogram, [("Insufficient cpu".to_string(), 1)]);
    assert_eq!(out.unresolvable, 0, "the cpu would fit on an empty node");
    let huge = Pod {
        requests: vec![("cpu", 2000)],
        ..Pod::default()
    }
    .spec();
    assert_eq!(schedule(&t, &huge, &cfg).unresolvable, 1);

    t.add_pod("ns/b", "n1", &Pod::default().spec());
    let out = schedule(&t, &Pod::default().spec(), &cfg);
    assert_eq!(out.histogram, [("Too many pods".to_string(), 1)]);

    assert!(t.remove_pod("ns/web") && !t.remove_pod("ns/web"));
    assert_eq!(t.req[0][0], 0);
    assert_eq!(schedule(&t, &other_port, &cfg).node.as_deref(), Some("n1"));
}

#[test]
fn a_removed_node_keeps_its_pods_as_a_ghost_until_it_returns() {
    let mut t = table(vec![("n1", node(1000, 1 << 30, 10))]);
    let pod = Pod {
        requests: vec![("cpu", 700)],
        ..Pod::default()
    };
    t.add_pod("ns/a", "n1", &pod.spec());
    assert!(t.remove_node("n1"));
    assert_eq!(t.nodes, 0);
    let cfg = default_config();
    let small = Pod {
        requests: vec![("cpu", 500)],
        ..Pod::default()
    }
    .spec();
    assert_eq!(schedule(&t, &small, &cfg).nodes, 0);
    t.set_node("n1", node(1000, 1 << 30, 10));
    // The returning node still carries the 700m accounted before it left.
    assert_eq!(
        schedule(&t, &small, &cfg).histogram,
        [("Insufficient cpu".to_string(), 1)]
    );
}

#[test]
fn least_allocated_prefers_the_emptier_node_with_upstreams_arithmetic() {
    let t = table(vec![
        ("big", node(4000, 4 << 30, 110)),
        ("small", node(2000, 4 << 30, 110)),
    ]);
    let pod = Pod {
        requests: vec![("cpu", 1000), ("memory", 1 << 30)],
        ..Pod::default()
    }
    .spec();
    let cfg = default_config();
    let rows = scores(&t, &pod, &cfg);
    // Fit: mean over cpu and memory of (allocatable - requested) * 100 / allocatable.
    assert_eq!(rows["big"][S_FIT], (75 + 75) / 2);
    assert_eq!(rows["small"][S_FIT], (50 + 75) / 2);
    // Balanced: 100 * (1 - |cpu fraction - memory fraction| / 2).
    assert_eq!(rows["big"][S_BALANCED], 100);
    assert_eq!(rows["small"][S_BALANCED], 87);
    assert_eq!(schedule(&t, &pod, &cfg).node.as_deref(), Some("big"));

    // MostAllocated: the mean of requested * 100 / allocatable.
    let most = parse_config(None, "MostAllocated", None, None, Vec::new()).unwrap();
    let rows = scores(&t, &pod, &most);
    assert_eq!(
        (rows["big"][S_FIT], rows["small"][S_FIT]),
        (25, (50 + 25) / 2)
    );
}

#[test]
fn preferences_and_soft_taints_are_normalised_and_weighted() {
    let t = table(vec![
        (
            "ssd",
            labelled(node(4000, 4 << 30, 110), &[("disk", "ssd")]),
        ),
        (
            "hdd",
            labelled(node(4000, 4 << 30, 110), &[("disk", "hdd")]),
        ),
        (
            "soft",
            tainted(
                labelled(node(4000, 4 << 30, 110), &[("disk", "ssd")]),
                "spot",
                "PreferNoSchedule",
            ),
        ),
    ]);
    let pod = Pod {
        preferred: vec![(5, (vec![expr("disk", "In", &["ssd"])], Vec::new()))],
        ..Pod::default()
    }
    .spec();
    let cfg = default_config();
    let rows = scores(&t, &pod, &cfg);
    assert_eq!(
        [
            rows["ssd"][S_AFFINITY],
            rows["hdd"][S_AFFINITY],
            rows["soft"][S_AFFINITY]
        ],
        [100, 0, 100]
    );
    assert_eq!(
        [
            rows["ssd"][S_TAINT],
            rows["hdd"][S_TAINT],
            rows["soft"][S_TAINT]
        ],
        [100, 100, 0]
    );
    let out = schedule(&t, &pod, &cfg);
    assert_eq!(out.node.as_deref(), Some("ssd"));
    // Weighted: fit, balanced and image 1 each, affinity 2 x 100, taint 3 x 100, no spread.
    let base = rows["ssd"][S_FIT] + rows["ssd"][S_BALANCED] + rows["ssd"][S_IMAGE];
    assert_eq!(out.score, base + 2 * 100 + 3 * 100);

    let tolerant = Pod {
        preferred: vec![(5, (vec![expr("disk", "In", &["ssd"])], Vec::new()))],
        tolerations: vec![("spot", "Exists", "", "PreferNoSchedule")],
        ..Pod::default()
    }
    .spec();
    assert_eq!(scores(&t, &tolerant, &cfg)["soft"][S_TAINT], 100);
}

#[test]
fn ties_are_broken_by_the_random_stream() {
    let t = table(vec![
        ("a", node(1000, 1 << 30, 110)),
        ("b", node(1000, 1 << 30, 110)),
    ]);
    let pod = Pod::default().spec();
    let cfg = default_config();
    // Reservoir sampling: the second tied node replaces the first when random() % 2 == 0.
    let first = t.schedule(&pod, &cfg, || 1).node;
    let second = t.schedule(&pod, &cfg, || 0).node;
    let mut picked = [first.unwrap(), second.unwrap()];
    picked.sort();
    assert_eq!(picked, ["a", "b"]);
}

#[test]
fn node_name_and_name_prefilter_narrow_the_candidates() {
    let t = table(vec![
        ("n1", node(1000, 1 << 30, 110)),
        ("n2", node(1000, 1 << 30, 110)),
    ]);
    let cfg = default_config();
    let pinned = Pod {
        node_name: "n2",
        ..Pod::default()
    }
    .spec();
    let out = schedule(&t, &pinned, &cfg);
    assert_eq!(out.node.as_deref(), Some("n2"));
    assert_eq!(
        out.histogram,
        [(
            "node(s) didn't match the requested node name".to_string(),
            1
        )]
    );
    let by_field = |names: &[&str]| Pod {
        required: Some(vec![(Vec::new(), vec![expr("metadata.name", "In", names)])]),
        ..Pod::default()
    };
    let out = schedule(&t, &by_field(&["n1"]).spec(), &cfg);
    assert_eq!(out.node.as_deref(), Some("n1"));
    assert_eq!(
        out.histogram,
        [(
            "node(s) didn't satisfy plugin(s) [NodeAffinity]".to_string(),
            1
        )]
    );
    // A node field requirement takes exactly one value: with two the term matches nothing.
    let out = schedule(&t, &by_field(&["n1", "n2"]).spec(), &cfg);
    assert_eq!((out.node, out.feasible), (None, 0));
    // A term naming no node at all: the PreFilter itself refuses the pod, before any node.
    let empty = Pod {
        required: Some(vec![(Vec::new(), vec![expr("metadata.name", "In", &[])])]),
        ..Pod::default()
    }
    .spec();
    let out = schedule(&t, &empty, &cfg);
    assert_eq!(out.prefilter, Some(CONFLICT));
    assert_eq!((out.node, out.unresolvable), (None, 2));
}

#[test]
fn disabled_plugins_neither_filter_nor_score() {
    let mut cordoned = node(1000, 1 << 30, 110);
    cordoned.unschedulable = true;
    let t = table(vec![("n1", cordoned)]);
    let pod = Pod::default().spec();
    let off = parse_config(
        Some(HashMap::from([("ImageLocality".to_string(), 0)])),
        "LeastAllocated",
        None,
        None,
        vec![
            "NodeUnschedulable".to_string(),
            "SelectorSpread".to_string(),
        ],
    )
    .unwrap();
    assert_eq!(schedule(&t, &pod, &off).node.as_deref(), Some("n1"));
    // A weight of 0, or a score plugin's name in `disabled`, switches the score off.
    assert_eq!(off.weights, [1, 1, 0, 2, 3, 0]);
    assert!(!off.filters[F_UNSCHEDULABLE] && off.filters[F_TAINT]);
    assert!(parse_config(None, "Random", None, None, Vec::new()).is_err());
    assert!(parse_config(None, "LeastAllocated", None, None, vec!["Nope".into()]).is_err());
}

#[test]
fn image_locality_scales_between_upstreams_thresholds() {
    assert_eq!(Table::image_score(0, 1), 0);
    assert_eq!(Table::image_score(IMAGE_MIN, 1), 0);
    assert_eq!(Table::image_score(IMAGE_MAX_PER_CONTAINER, 1), 100);
    assert_eq!(Table::image_score(10 * IMAGE_MAX_PER_CONTAINER, 1), 100);
    let half = IMAGE_MIN + (IMAGE_MAX_PER_CONTAINER - IMAGE_MIN) / 2;
    assert_eq!(Table::image_score(half, 1), 50);
}
