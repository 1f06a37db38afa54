//! The profile's configuration, and one pod's terms resolved against the table's ids.

use std::collections::HashSet;

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Strategy {
    LeastAllocated,
    MostAllocated,
}

#[derive(Clone, Debug)]
pub(super) struct Config {
    pub(super) filters: [bool; 7],
    pub(super) weights: [i64; 6],
    pub(super) strategy: Strategy,
    /// (index into cpu/memory/ephemeral-storage, weight) for NodeResourcesFit's score.
    pub(super) fit_resources: Vec<(usize, i64)>,
    /// Resources BalancedAllocation compares.
    pub(super) balanced_resources: Vec<usize>,
}

// ---------------------------------------------------------------------- one pod, resolved

/// A node term with its strings replaced by the table's ids.
pub(super) struct RTerm {
    /// (key id, op, value ids, bound); a key the table never saw is NONE.
    pub(super) exprs: Vec<(u32, Op, Vec<u32>, i64)>,
    pub(super) fields: Vec<(bool, Op, String)>,
    pub(super) valid: bool,
}

/// The incoming pod against one table: ids looked up once, inter-pod state computed once.
pub(super) struct Resolved<'a> {
    pub(super) spec: &'a Spec,
    pub(super) tolerates_unschedulable: bool,
    pub(super) node_selector: Vec<(u32, u32)>,
    pub(super) required: Option<Vec<RTerm>>,
    pub(super) preferred: Vec<(i64, RTerm)>,
    /// Taints are compared as ids: (key id or None for "any key", exists, value id, effect).
    pub(super) tolerations: Vec<(Option<u32>, Option<bool>, u32, Effect)>,
    pub(super) ports: Vec<(u32, u32, i32)>,
    pub(super) all_ips: u32,
    pub(super) scalars: Vec<(u32, i64)>,
    /// (image id, its spread-scaled size) of each container image the table knows.
    pub(super) images: Vec<(u32, i64)>,
    /// Names NodeAffinity's PreFilter restricts the pod to (None: every node).
    pub(super) names: Option<HashSet<&'a str>>,
    pub(super) interpod: Option<InterPod>,
}

/// InterPodAffinity's PreFilter state: topology pairs as (key id, value id).
#[derive(Default)]
pub(super) struct InterPod {
    pub(super) affinity_keys: Vec<u32>,
    pub(super) affinity_counts: IdMap<(u32, u32), u32>,
    pub(super) self_match: bool,
    pub(super) anti_keys: Vec<u32>,
    pub(super) anti_pairs: IdSet<(u32, u32)>,
    /// Domains existing pods' anti-affinity keeps this pod out of, by topology key.
    pub(super) existing: Vec<(u32, IdSet<u32>)>,
}

fn resolve_term(t: &Table, term: &NodeTerm) -> RTerm {
    RTerm {
        exprs: term
            .exprs
            .iter()
            .map(|e| {
                let vals = e.values.iter().map(|v| t.strings.get(v)).collect();
                (t.strings.get(&e.key), e.op, vals, e.num)
            })
            .collect(),
        fields: term
            .fields
            .iter()
            .map(|e| (e.key == "metadata.name", e.op, e.values[0].clone()))
            .collect(),
        valid: term.valid,
    }
}

pub(super) fn resolve<'a>(t: &Table, spec: &'a Spec) -> Resolved<'a> {
    let tolerates_unschedulable = spec
        .tolerations
        .iter()
        .any(|tol| tol.tolerates(UNSCHEDULABLE_TAINT, "", Effect::NoSchedule));
    let images = if spec.images.is_empty() || t.nodes == 0 {
        Vec::new()
    } else {
        spec.images
            .iter()
            .filter_map(|name| {
                let id = t.images.get(name);
                let state = t.image_states.get(id as usize)?;
                if state.slots.is_empty() {
                    return None;
                }
                let spread = state.slots.len() as f64 / t.nodes as f64;
                Some((id, (state.size as f64 * spread) as i64))
            })
            .collect()
    };
    let names = spec
        .required
        .as_ref()
        .and_then(|terms| prefilter_names(terms));
    Resolved {
        spec,
        tolerates_unschedulable,
        node_selector: spec
            .node_selector
            .iter()
            .map(|(k, v)| (t.strings.get(k), t.strings.get(v)))
            .collect(),
        required: spec
            .required
            .as_ref()
            .map(|terms| terms.iter().map(|term| resolve_term(t, term)).collect()),
        preferred: spec
            .preferred
            .iter()
            .filter(|(w, _)| *w != 0)
            .map(|(w, term)| (*w, resolve_term(t, term)))
            .collect(),
        tolerations: spec
            .tolerations
            .iter()
            .map(|tol| {
                let key = (!tol.key.is_empty()).then(|| t.strings.get(&tol.key));
                (key, tol.exists, t.strings.get(&tol.value), tol.effect)
            })
            .collect(),
        ports: spec
            .ports
            .iter()
            .map(|(ip, proto, port)| (t.strings.get(ip), t.strings.get(proto), *port))
            .collect(),
        all_ips: t.strings.get("0.0.0.0"),
        scalars: spec
            .requests
            .scalars
            .iter()
            .map(|(k, v)| (t.resources.get(k), *v))
            .collect(),
        images,
        names,
        interpod: interpod_state(t, spec),
    }
}

/// NodeAffinity's PreFilter: when every required term names nodes by metadata.name In, only
/// those nodes are tried. Some(empty) means the terms contradict each other.
fn prefilter_names(terms: &[NodeTerm]) -> Option<HashSet<&str>> {
    if terms.is_empty() {
        return None;
    }
    let mut union: HashSet<&str> = HashSet::new();
    for term in terms {
        let mut names: Option<HashSet<&str>> = None;
        for set in &term.name_sets {
            let s: HashSet<&str> = set.iter().map(|v| v.as_str()).collect();
            names = Some(match names {
                None => s,
                Some(prev) => prev.intersection(&s).copied().collect(),
            });
        }
        union.extend(names?);
    }
    Some(union)
}

fn interpod_state(t: &Table, spec: &Spec) -> Option<InterPod> {
    if spec.affinity.is_empty() && spec.anti_affinity.is_empty() && t.anti_pods.is_empty() {
        return None;
    }
    let lookup = |x: &str| t.strings.get(x);
    let affinity: Vec<RPodTerm> = spec.affinity.iter().map(|x| x.resolve(lookup)).collect();
    let anti: Vec<RPodTerm> = spec
        .anti_affinity
        .iter()
        .map(|x| x.resolve(lookup))
        .collect();
    let namespace = t.strings.get(&spec.namespace);
    let labels = label_ids(&spec.labels, |x| t.strings.get(x));
    let mut st = InterPod {
        affinity_keys: affinity.iter().map(|x| x.topology_key).collect(),
        anti_keys: anti.iter().map(|x| x.topology_key).collect(),
        ..InterPod::default()
    };
    st.self_match = !affinity.is_empty()
        && spec.affinity.iter().all(|term| {
            // Matched on strings: the pod's own labels need not be known to the table.
            term.selector.as_ref().is_some_and(|sel| {
                term.namespaces
                    .as_ref()
                    .is_none_or(|ns| ns.contains(&spec.namespace))
                    && sel
                        .iter()
                        .all(|e| e.matches(pod_label(&spec.labels, &e.key)))
            })
        });
    if !affinity.is_empty() || !anti.is_empty() {
        for rec in t.pods_of.iter().flatten() {
            let s = rec.slot as usize;
            if !t.present[s] {
                continue;
            }
            if !affinity.is_empty()
                && affinity
                    .iter()
                    .all(|term| term.matches(rec.namespace, &rec.labels))
            {
                for &key in &st.affinity_keys {
                    if let Some(value) = t.topology_value(s, key) {
                        *st.affinity_counts.entry((key, value)).or_insert(0) += 1;
                    }
                }
            }
            for term in &anti {
                if let Some(value) = t.topology_value(s, term.topology_key) {
                    if !st.anti_pairs.contains(&(term.topology_key, value))
                        && term.matches(rec.namespace, &rec.labels)
                    {
                        st.anti_pairs.insert((term.topology_key, value));
                    }
                }
            }
        }
    }
    for id in &t.anti_pods {
        let Some(rec) = &t.pods_of[*id as usize] else {
            continue;
        };
        let s = rec.slot as usize;
        if !t.present[s] {
            continue;
        }
        for term in rec.anti.iter() {
            if term.matches(namespace, &labels) {
                if let Some(value) = t.topology_value(s, term.topology_key) {
                    match st
                        .existing
                        .iter_mut()
                        .find(|(k, _)| *k == term.topology_key)
                    {
                        Some((_, values)) => {
                            values.insert(value);
                        }
                        None => {
                            let mut values = IdSet::default();
                            values.insert(value);
                            st.existing.push((term.topology_key, values));
                        }
                    }
                }
            }
        }
    }
    Some(st)
}
