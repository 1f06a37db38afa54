//! What the kernel knows of one pod: its requirements as the Python side hands them over.

use std::collections::HashMap;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

impl Op {
    pub(super) fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "In" => Op::In,
            "NotIn" => Op::NotIn,
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            "Gt" => Op::Gt,
            "Lt" => Op::Lt,
            _ => return None,
        })
    }
}

/// One requirement of a node selector term or a pod label selector.
#[derive(Clone, Debug)]
pub(super) struct Expr {
    pub(super) key: String,
    pub(super) op: Op,
    pub(super) values: Vec<String>,
    /// The bound of Gt and Lt.
    pub(super) num: i64,
}

type RawExpr = (String, String, Vec<String>);

impl Expr {
    /// A node selector requirement, validated as upstream does before matching: None when it
    /// is malformed (which makes its whole term match nothing).
    pub(super) fn node_label(raw: &RawExpr) -> Option<Expr> {
        let (key, op, values) = raw;
        let op = Op::parse(op)?;
        let mut num = 0;
        match op {
            Op::In | Op::NotIn if values.is_empty() => return None,
            Op::Exists | Op::DoesNotExist if !values.is_empty() => return None,
            Op::Gt | Op::Lt => {
                if values.len() != 1 {
                    return None;
                }
                num = values[0].parse::<i64>().ok()?;
            }
            _ => {}
        }
        Some(Expr {
            key: key.clone(),
            op,
            values: values.clone(),
            num,
        })
    }

    /// A node field requirement: only In and NotIn with exactly one value.
    fn node_field(raw: &RawExpr) -> Option<Expr> {
        let (key, op, values) = raw;
        let op = Op::parse(op).filter(|op| matches!(op, Op::In | Op::NotIn))?;
        if values.len() != 1 {
            return None;
        }
        Some(Expr {
            key: key.clone(),
            op,
            values: values.clone(),
            num: 0,
        })
    }

    /// A metav1.LabelSelector requirement: In, NotIn, Exists, DoesNotExist.
    pub(super) fn pod_label(raw: &RawExpr) -> Option<Expr> {
        let expr = Expr::node_label(raw)?;
        (!matches!(expr.op, Op::Gt | Op::Lt)).then_some(expr)
    }

    /// Against a label value (None: label absent).
    pub(super) fn matches(&self, value: Option<&str>) -> bool {
        match (self.op, value) {
            (Op::In, Some(v)) => self.values.iter().any(|x| x == v),
            (Op::In, None) => false,
            (Op::NotIn, Some(v)) => !self.values.iter().any(|x| x == v),
            (Op::NotIn, None) => true,
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
            (Op::Gt, Some(v)) => v.parse::<i64>().is_ok_and(|n| n > self.num),
            (Op::Lt, Some(v)) => v.parse::<i64>().is_ok_and(|n| n < self.num),
            (Op::Gt | Op::Lt, None) => false,
        }
    }
}

/// A NodeSelectorTerm; `valid` is false when it is empty or has a malformed requirement,
/// and then it matches no node.
#[derive(Clone, Debug)]
pub(super) struct NodeTerm {
    pub(super) exprs: Vec<Expr>,
    pub(super) fields: Vec<Expr>,
    /// metadata.name In values, for NodeAffinity's PreFilter (taken before validation).
    pub(super) name_sets: Vec<Vec<String>>,
    pub(super) valid: bool,
}

type RawNodeTerm = (Vec<RawExpr>, Vec<RawExpr>);

impl NodeTerm {
    pub(super) fn new(raw: &RawNodeTerm) -> NodeTerm {
        let exprs: Option<Vec<Expr>> = raw.0.iter().map(Expr::node_label).collect();
        let fields: Option<Vec<Expr>> = raw.1.iter().map(Expr::node_field).collect();
        let name_sets = raw
            .1
            .iter()
            .filter(|(k, op, _)| k == "metadata.name" && op == "In")
            .map(|(_, _, v)| v.clone())
            .collect();
        let empty = raw.0.is_empty() && raw.1.is_empty();
        let valid = !empty && exprs.is_some() && fields.is_some();
        NodeTerm {
            exprs: exprs.unwrap_or_default(),
            fields: fields.unwrap_or_default(),
            name_sets,
            valid,
        }
    }
}

/// A required (anti-)affinity term: which pods it selects, and the topology it spans.
#[derive(Clone, Debug)]
pub(super) struct PodTerm {
    /// None: selects no pod (a null or malformed label selector).
    pub(super) selector: Option<Vec<Expr>>,
    /// None: every namespace.
    pub(super) namespaces: Option<Vec<String>>,
    pub(super) topology_key: String,
}

type RawPodTerm = (Option<Vec<RawExpr>>, Option<Vec<String>>, String);

impl PodTerm {
    pub(super) fn new(raw: &RawPodTerm) -> PodTerm {
        let selector = raw
            .0
            .as_ref()
            .and_then(|exprs| exprs.iter().map(Expr::pod_label).collect());
        PodTerm {
            selector,
            namespaces: raw.1.clone(),
            topology_key: raw.2.clone(),
        }
    }

    /// With its strings as the table's ids: `id` interns (for pods the table keeps) or only
    /// looks up (for the incoming pod; an unknown string is NONE and matches nothing).
    pub(super) fn resolve(&self, mut id: impl FnMut(&str) -> u32) -> RPodTerm {
        RPodTerm {
            selector: self.selector.as_ref().map(|exprs| {
                exprs
                    .iter()
                    .map(|e| (id(&e.key), e.op, e.values.iter().map(|v| id(v)).collect()))
                    .collect()
            }),
            namespaces: self
                .namespaces
                .as_ref()
                .map(|names| names.iter().map(|n| id(n)).collect()),
            topology_key: id(&self.topology_key),
        }
    }
}

pub(super) fn pod_label<'a>(labels: &'a [(Box<str>, Box<str>)], key: &str) -> Option<&'a str> {
    labels
        .binary_search_by(|(k, _)| (**k).cmp(key))
        .ok()
        .map(|i| &*labels[i].1)
}

/// A PodTerm in ids, matched against pods' interned labels.
#[derive(Clone, Debug)]
pub(super) struct RPodTerm {
    pub(super) selector: Option<Vec<(u32, Op, Vec<u32>)>>,
    pub(super) namespaces: Option<Vec<u32>>,
    pub(super) topology_key: u32,
}

impl RPodTerm {
    pub(super) fn matches(&self, namespace: u32, labels: &[(u32, u32)]) -> bool {
        let Some(selector) = &self.selector else {
            return false;
        };
        if let Some(namespaces) = &self.namespaces {
            if !namespaces.contains(&namespace) {
                return false;
            }
        }
        selector
            .iter()
            .all(|(key, op, values)| match (op, label_value(labels, *key)) {
                (Op::In, Some(v)) => values.contains(&v),
                (Op::NotIn, Some(v)) => !values.contains(&v),
                (Op::NotIn, None) | (Op::Exists, Some(_)) | (Op::DoesNotExist, None) => true,
                _ => false,
            })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Effect {
    /// A toleration without an effect: it tolerates every effect.
    Any,
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
    Other,
}

impl Effect {
    pub(super) fn parse(s: &str) -> Effect {
        match s {
            "" => Effect::Any,
            "NoSchedule" => Effect::NoSchedule,
            "PreferNoSchedule" => Effect::PreferNoSchedule,
            "NoExecute" => Effect::NoExecute,
            _ => Effect::Other,
        }
    }
}

#[derive(Clone, Debug)]
pub(super) struct Toleration {
    pub(super) key: String,
    /// Some(true): Exists; Some(false): Equal (or no operator); None: unknown, tolerates nothing.
    pub(super) exists: Option<bool>,
    pub(super) value: String,
    pub(super) effect: Effect,
}

impl Toleration {
    /// Upstream's ToleratesTaint, on strings.
    pub(super) fn tolerates(&self, key: &str, value: &str, effect: Effect) -> bool {
        if self.effect != Effect::Any && self.effect != effect {
            return false;
        }
        if !self.key.is_empty() && self.key != key {
            return false;
        }
        match self.exists {
            Some(true) => true,
            Some(false) => self.value == value,
            None => false,
        }
    }
}

/// Resource requests in the units the table counts: cpu in millicores, the rest in units.
#[derive(Clone, Debug, Default)]
pub(super) struct Requests {
    /// cpu, memory, ephemeral-storage.
    pub(super) base: [i64; 3],
    /// For scoring: cpu and memory with upstream's defaults for containers that set none.
    pub(super) nonzero: [i64; 2],
    pub(super) scalars: Vec<(String, i64)>,
}

/// What the kernel needs of one pod, extracted once by the Python side.
#[derive(Clone, Debug, Default)]
pub(super) struct Spec {
    pub(super) namespace: String,
    /// Sorted by key.
    pub(super) labels: Vec<(Box<str>, Box<str>)>,
    pub(super) node_name: String,
    pub(super) requests: Requests,
    pub(super) node_selector: Vec<(String, String)>,
    /// None: no required node affinity.
    pub(super) required: Option<Vec<NodeTerm>>,
    pub(super) preferred: Vec<(i64, NodeTerm)>,
    pub(super) tolerations: Vec<Toleration>,
    /// (host IP, protocol, port), sanitised: "" IP is 0.0.0.0, "" protocol is TCP.
    pub(super) ports: Vec<(String, String, i32)>,
    /// One per container (init containers included), normalised with a default tag.
    pub(super) images: Vec<String>,
    pub(super) spread_key: String,
    pub(super) affinity: Vec<PodTerm>,
    pub(super) anti_affinity: Vec<PodTerm>,
}

pub(super) fn resource_index(name: &str) -> Option<usize> {
    match name {
        "cpu" => Some(0),
        "memory" => Some(1),
        "ephemeral-storage" => Some(2),
        _ => None,
    }
}

/// The summary of one pod that the NodeTable filters and scores nodes for.
#[pyclass(frozen, module = "k8slite._native")]
pub struct PodSpec {
    pub(super) spec: Spec,
}

#[pymethods]
impl PodSpec {
    // A keyword-only constructor mirroring the pod fields it summarises.
    #[allow(clippy::too_many_arguments)]
    #[new]
    #[pyo3(signature = (*, namespace, labels = None, node_name = String::new(), requests = None,
        nonzero = (0, 0), node_selector = None, required = None, preferred = Vec::new(),
        tolerations = Vec::new(), ports = Vec::new(), images = Vec::new(),
        spread_key = String::new(), affinity = Vec::new(), anti_affinity = Vec::new()))]
    pub(super) fn py_new(
        namespace: String,
        labels: Option<HashMap<String, String>>,
        node_name: String,
        requests: Option<HashMap<String, i64>>,
        nonzero: (i64, i64),
        node_selector: Option<HashMap<String, String>>,
        required: Option<Vec<RawNodeTerm>>,
        preferred: Vec<(i64, RawNodeTerm)>,
        tolerations: Vec<(String, String, String, String)>,
        ports: Vec<(String, String, i32)>,
        images: Vec<String>,
        spread_key: String,
        affinity: Vec<RawPodTerm>,
        anti_affinity: Vec<RawPodTerm>,
    ) -> PyResult<Self> {
        let mut reqs = Requests {
            nonzero: [nonzero.0, nonzero.1],
            ..Requests::default()
        };
        for (name, value) in requests.unwrap_or_default() {
            match resource_index(&name) {
                Some(i) => reqs.base[i] = value,
                None if value != 0 => reqs.scalars.push((name, value)),
                None => {}
            }
        }
        if reqs.scalars.len() > MAX_SCALARS {
            return Err(PyValueError::new_err(format!(
                "a pod may request at most {MAX_SCALARS} extended resources"
            )));
        }
        reqs.scalars.sort();
        let mut labels: Vec<(Box<str>, Box<str>)> = labels
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        labels.sort();
        let mut node_selector: Vec<(String, String)> =
            node_selector.unwrap_or_default().into_iter().collect();
        node_selector.sort();
        let tolerations = tolerations
            .into_iter()
            .map(|(key, op, value, effect)| Toleration {
                key,
                exists: match op.as_str() {
                    "Exists" => Some(true),
                    "" | "Equal" => Some(false),
                    _ => None,
                },
                value,
                effect: Effect::parse(&effect),
            })
            .collect();
        let ports = ports
            .into_iter()
            .filter(|(_, _, port)| *port > 0)
            .map(|(ip, proto, port)| {
                let ip = if ip.is_empty() { "0.0.0.0".into() } else { ip };
                let proto = if proto.is_empty() {
                    "TCP".into()
                } else {
                    proto
                };
                (ip, proto, port)
            })
            .collect();
        Ok(PodSpec {
            spec: Spec {
                namespace,
                labels,
                node_name,
                requests: reqs,
                node_selector,
                required: required.map(|terms| terms.iter().map(NodeTerm::new).collect()),
                preferred: preferred
                    .iter()
                    .map(|(w, t)| (*w, NodeTerm::new(t)))
                    .collect(),
                tolerations,
                ports,
                images,
                spread_key,
                affinity: affinity.iter().map(PodTerm::new).collect(),
                anti_affinity: anti_affinity.iter().map(PodTerm::new).collect(),
            },
        })
    }

    #[getter]
    fn namespace(&self) -> &str {
        &self.spec.namespace
    }

    /// cpu (millicores), memory and ephemeral-storage requested, then extended resources.
    #[getter]
    fn requests(&self) -> HashMap<String, i64> {
        let r = &self.spec.requests;
        let mut out: HashMap<String, i64> = ["cpu", "memory", "ephemeral-storage"]
            .iter()
            .zip(r.base)
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        out.extend(r.scalars.iter().cloned());
        out
    }
}
