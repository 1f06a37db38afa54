//! The scheduler's kernel: a columnar table of nodes kept in step with the informers, and the
//! filter and score of every node for one pod in one call, with the GIL released.
//!
//! The semantics are those of kube-scheduler's default profile (NodeUnschedulable, NodeName,
//! TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit, InterPodAffinity filters; the
//! NodeResourcesFit, NodeResourcesBalancedAllocation, ImageLocality, NodeAffinity and
//! TaintToleration scores) plus a simple SelectorSpread score. A readable Python twin lives in
//! tests/reference/scheduler.py and is the oracle of the property tests.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

const MAX_NODE_SCORE: i64 = 100;
/// An id that no interned string has: a name the table has never seen matches nothing.
const NONE: u32 = u32::MAX;
const MIB: i64 = 1024 * 1024;
/// ImageLocality's thresholds: below 23 MiB an image is not worth pulling towards.
const IMAGE_MIN: i64 = 23 * MIB;
const IMAGE_MAX_PER_CONTAINER: i64 = 1000 * MIB;
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

// ------------------------------------------------------------------------------- reasons

// Bits of a node's failure mask, one per upstream reason; scalar resources follow.
const R_UNSCHEDULABLE: u32 = 0;
const R_NODE_NAME: u32 = 1;
const R_TAINT: u32 = 2;
const R_NODE_AFFINITY: u32 = 3;
const R_PREFILTER: u32 = 4;
const R_PORTS: u32 = 5;
const R_TOO_MANY_PODS: u32 = 6;
const R_CPU: u32 = 7;
const R_MEMORY: u32 = 8;
const R_EPHEMERAL: u32 = 9;
const R_AFFINITY: u32 = 10;
const R_ANTI_AFFINITY: u32 = 11;
const R_EXISTING_ANTI: u32 = 12;
const R_SCALAR: u32 = 13;
/// Scalar (extended) resources one pod may request: what fits in the failure mask.
const MAX_SCALARS: usize = 64 - R_SCALAR as usize;

const REASONS: [&str; R_SCALAR as usize] = [
    "node(s) were unschedulable",
    "node(s) didn't match the requested node name",
    "node(s) had untolerated taint(s)",
    "node(s) didn't match Pod's node affinity/selector",
    "node(s) didn't satisfy plugin(s) [NodeAffinity]",
    "node(s) didn't have free ports for the requested pod ports",
    "Too many pods",
    "Insufficient cpu",
    "Insufficient memory",
    "Insufficient ephemeral-storage",
    "node(s) didn't match pod affinity rules",
    "node(s) didn't match pod anti-affinity rules",
    "node(s) didn't satisfy existing pods anti-affinity rules",
];

/// The message of a NodeAffinity PreFilter that leaves no node to try.
const CONFLICT: &str = "pod affinity terms conflict";

// ------------------------------------------------------------------------------- plugins

/// Filters in upstream's order; a node reports only the first that rejects it.
const FILTERS: [&str; 7] = [
    "NodeUnschedulable",
    "NodeName",
    "TaintToleration",
    "NodeAffinity",
    "NodePorts",
    "NodeResourcesFit",
    "InterPodAffinity",
];
const F_UNSCHEDULABLE: usize = 0;
const F_NODE_NAME: usize = 1;
const F_TAINT: usize = 2;
const F_AFFINITY: usize = 3;
const F_PORTS: usize = 4;
const F_FIT: usize = 5;
const F_INTERPOD: usize = 6;

const SCORES: [&str; 6] = [
    "NodeResourcesFit",
    "NodeResourcesBalancedAllocation",
    "ImageLocality",
    "NodeAffinity",
    "TaintToleration",
    "SelectorSpread",
];
const S_FIT: usize = 0;
const S_BALANCED: usize = 1;
const S_IMAGE: usize = 2;
const S_AFFINITY: usize = 3;
const S_TAINT: usize = 4;
const S_SPREAD: usize = 5;
/// Upstream's default profile weights (SelectorSpread takes PodTopologySpread's 2).
const DEFAULT_WEIGHTS: [i64; 6] = [1, 1, 1, 2, 3, 2];

fn plugin_of(bit: u32) -> usize {
    match bit {
        R_UNSCHEDULABLE => F_UNSCHEDULABLE,
        R_NODE_NAME => F_NODE_NAME,
        R_TAINT => F_TAINT,
        R_NODE_AFFINITY | R_PREFILTER => F_AFFINITY,
        R_PORTS => F_PORTS,
        R_AFFINITY | R_ANTI_AFFINITY | R_EXISTING_ANTI => F_INTERPOD,
        _ => F_FIT,
    }
}

// ---------------------------------------------------------------------------- interning

/// A multiply-rotate hasher for the small integer keys looked up once per node per call;
/// SipHash's flood resistance buys nothing for ids the table hands out itself.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
type IdSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

/// Strings as small ids, so per-node comparisons are integer compares.
#[derive(Default)]
struct Interner {
    ids: HashMap<Box<str>, u32>,
    strs: Vec<Box<str>>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.strs.len() as u32;
        self.strs.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }

    fn get(&self, s: &str) -> u32 {
        self.ids.get(s).copied().unwrap_or(NONE)
    }

    fn str(&self, id: u32) -> &str {
        &self.strs[id as usize]
    }
}

// ------------------------------------------------------------------------- pod summaries

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
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
struct Expr {
    key: String,
    op: Op,
    values: Vec<String>,
    /// The bound of Gt and Lt.
    num: i64,
}

type RawExpr = (String, String, Vec<String>);

impl Expr {
    /// A node selector requirement, validated as upstream does before matching: None when it
    /// is malformed (which makes its whole term match nothing).
    fn node_label(raw: &RawExpr) -> Option<Expr> {
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
    fn pod_label(raw: &RawExpr) -> Option<Expr> {
        let expr = Expr::node_label(raw)?;
        (!matches!(expr.op, Op::Gt | Op::Lt)).then_some(expr)
    }

    /// Against a label value (None: label absent).
    fn matches(&self, value: Option<&str>) -> bool {
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
struct NodeTerm {
    exprs: Vec<Expr>,
    fields: Vec<Expr>,
    /// metadata.name In values, for NodeAffinity's PreFilter (taken before validation).
    name_sets: Vec<Vec<String>>,
    valid: bool,
}

type RawNodeTerm = (Vec<RawExpr>, Vec<RawExpr>);

impl NodeTerm {
    fn new(raw: &RawNodeTerm) -> NodeTerm {
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
struct PodTerm {
    /// None: selects no pod (a null or malformed label selector).
    selector: Option<Vec<Expr>>,
    /// None: every namespace.
    namespaces: Option<Vec<String>>,
    topology_key: String,
}

type RawPodTerm = (Option<Vec<RawExpr>>, Option<Vec<String>>, String);

impl PodTerm {
    fn new(raw: &RawPodTerm) -> PodTerm {
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
    fn resolve(&self, mut id: impl FnMut(&str) -> u32) -> RPodTerm {
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

fn pod_label<'a>(labels: &'a [(Box<str>, Box<str>)], key: &str) -> Option<&'a str> {
    labels
        .binary_search_by(|(k, _)| (**k).cmp(key))
        .ok()
        .map(|i| &*labels[i].1)
}

/// A PodTerm in ids, matched against pods' interned labels.
#[derive(Clone, Debug)]
struct RPodTerm {
    selector: Option<Vec<(u32, Op, Vec<u32>)>>,
    namespaces: Option<Vec<u32>>,
    topology_key: u32,
}

impl RPodTerm {
    fn matches(&self, namespace: u32, labels: &[(u32, u32)]) -> bool {
        let Some(selector) = &self.selector else {
            return false;
        };
        if let Some(namespaces) = &self.namespaces {
            if !namespaces.contains(&namespace) {
                return false;
            }
        }
        selector.iter().all(|(key, op, values)| {
            let value = labels
                .binary_search_by(|(k, _)| k.cmp(key))
                .ok()
                .map(|i| labels[i].1);
            match (op, value) {
                (Op::In, Some(v)) => values.contains(&v),
                (Op::NotIn, Some(v)) => !values.contains(&v),
                (Op::NotIn, None) | (Op::Exists, Some(_)) | (Op::DoesNotExist, None) => true,
                _ => false,
            }
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Effect {
    /// A toleration without an effect: it tolerates every effect.
    Any,
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
    Other,
}

impl Effect {
    fn parse(s: &str) -> Effect {
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
struct Toleration {
    key: String,
    /// Some(true): Exists; Some(false): Equal (or no operator); None: unknown, tolerates nothing.
    exists: Option<bool>,
    value: String,
    effect: Effect,
}

impl Toleration {
    /// Upstream's ToleratesTaint, on strings.
    fn tolerates(&self, key: &str, value: &str, effect: Effect) -> bool {
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
struct Requests {
    /// cpu, memory, ephemeral-storage.
    base: [i64; 3],
    /// For scoring: cpu and memory with upstream's defaults for containers that set none.
    nonzero: [i64; 2],
    scalars: Vec<(String, i64)>,
}

/// What the kernel needs of one pod, extracted once by the Python side.
#[derive(Clone, Debug, Default)]
struct Spec {
    namespace: String,
    /// Sorted by key.
    labels: Vec<(Box<str>, Box<str>)>,
    node_name: String,
    requests: Requests,
    node_selector: Vec<(String, String)>,
    /// None: no required node affinity.
    required: Option<Vec<NodeTerm>>,
    preferred: Vec<(i64, NodeTerm)>,
    tolerations: Vec<Toleration>,
    /// (host IP, protocol, port), sanitised: "" IP is 0.0.0.0, "" protocol is TCP.
    ports: Vec<(String, String, i32)>,
    /// One per container (init containers included), normalised with a default tag.
    images: Vec<String>,
    spread_key: String,
    affinity: Vec<PodTerm>,
    anti_affinity: Vec<PodTerm>,
}

fn resource_index(name: &str) -> Option<usize> {
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
    spec: Spec,
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
    fn py_new(
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

// ---------------------------------------------------------------------------- node table

#[derive(Clone, Copy, Debug)]
struct Taint {
    key: u32,
    value: u32,
    effect: Effect,
}

#[derive(Clone, Copy, Debug)]
struct PortUse {
    ip: u32,
    proto: u32,
    port: i32,
    count: u32,
}

struct ImageState {
    size: i64,
    /// Slots of the nodes that hold the image (ImageLocality looks up by image, not by node).
    slots: Vec<u32>,
}

/// A bound or assumed pod, as far as node accounting and inter-pod affinity need it.
struct PodRec {
    slot: u32,
    namespace: u32,
    /// Sorted by key id.
    labels: Box<[(u32, u32)]>,
    base: [i64; 3],
    nonzero: [i64; 2],
    scalars: Box<[(u32, i64)]>,
    ports: Box<[(u32, u32, i32)]>,
    spread: Option<Box<str>>,
    anti: Box<[RPodTerm]>,
}

/// Per-node columns (struct of arrays), indexed by slot. A slot whose node object is gone
/// (or not yet seen) but which still has pods is kept as a ghost: not a candidate, but its
/// accounting survives until the node returns or the pods go.
#[derive(Default)]
struct Table {
    strings: Interner,
    resources: Interner,
    images: Interner,
    image_states: Vec<ImageState>,
    slots: HashMap<Box<str>, u32>,
    free: Vec<u32>,
    nodes: usize,

    name: Vec<Box<str>>,
    present: Vec<bool>,
    unschedulable: Vec<bool>,
    /// cpu (milli), memory, ephemeral-storage, pods.
    alloc: Vec<[i64; 4]>,
    /// cpu, memory, ephemeral-storage requested by bound and assumed pods.
    req: Vec<[i64; 3]>,
    nonzero: Vec<[i64; 2]>,
    pods: Vec<u32>,
    scalar_alloc: Vec<Box<[(u32, i64)]>>,
    scalar_req: Vec<Vec<(u32, i64)>>,
    /// Sorted by key id.
    labels: Vec<Box<[(u32, u32)]>>,
    taints: Vec<Box<[Taint]>>,
    ports: Vec<Vec<PortUse>>,
    /// Sorted image ids.
    node_images: Vec<Box<[u32]>>,

    /// Pods by key, kept in a slab (`pods_of`) so that scans walk a plain vector.
    pod_ids: HashMap<Box<str>, u32>,
    pods_of: Vec<Option<PodRec>>,
    free_pods: Vec<u32>,
    /// Keys of pods with required anti-affinity terms (checked against every incoming pod).
    anti_pods: IdSet<u32>,
    /// Label columns (key id -> value id per slot, NONE when absent) for the topology keys
    /// pod (anti-)affinity terms use: read once per node per pod, so kept dense.
    topology: IdMap<u32, Vec<u32>>,
    /// Spread key -> slot -> pods with that key on the slot.
    spread: HashMap<Box<str>, IdMap<u32, u32>>,
}

/// A node as set_node receives it.
struct NodeData {
    alloc: [i64; 4],
    scalars: Vec<(String, i64)>,
    labels: Vec<(String, String)>,
    taints: Vec<(String, String, String)>,
    unschedulable: bool,
    images: Vec<(Vec<String>, i64)>,
}

impl Table {
    fn slot_for(&mut self, name: &str) -> u32 {
        if let Some(&slot) = self.slots.get(name) {
            return slot;
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                self.name[slot as usize] = name.into();
                slot
            }
            None => {
                self.name.push(name.into());
                self.present.push(false);
                self.unschedulable.push(false);
                self.alloc.push([0; 4]);
                self.req.push([0; 3]);
                self.nonzero.push([0; 2]);
                self.pods.push(0);
                self.scalar_alloc.push(Box::default());
                self.scalar_req.push(Vec::new());
                self.labels.push(Box::default());
                self.taints.push(Box::default());
                self.ports.push(Vec::new());
                self.node_images.push(Box::default());
                for column in self.topology.values_mut() {
                    column.push(NONE);
                }
                (self.name.len() - 1) as u32
            }
        };
        self.slots.insert(name.into(), slot);
        slot
    }

    /// Frees a slot with neither a node nor pods.
    fn release_if_empty(&mut self, slot: u32) {
        let s = slot as usize;
        if self.present[s] || self.pods[s] > 0 {
            return;
        }
        self.slots.remove(&self.name[s]);
        self.name[s] = "".into();
        self.req[s] = [0; 3];
        self.nonzero[s] = [0; 2];
        self.scalar_req[s] = Vec::new();
        self.ports[s] = Vec::new();
        self.free.push(slot);
    }

    fn set_images(&mut self, slot: usize, images: &[(Vec<String>, i64)]) {
        for &id in self.node_images[slot].iter() {
            let holders = &mut self.image_states[id as usize].slots;
            if let Some(i) = holders.iter().position(|&x| x as usize == slot) {
                holders.swap_remove(i);
            }
        }
        let mut ids: Vec<u32> = Vec::new();
        for (names, size) in images {
            for name in names {
                let id = self.images.intern(name);
                if id as usize == self.image_states.len() {
                    self.image_states.push(ImageState {
                        size: 0,
                        slots: Vec::new(),
                    });
                }
                if !ids.contains(&id) {
                    ids.push(id);
                    let state = &mut self.image_states[id as usize];
                    // Like upstream's cache, an image's size is the one first reported.
                    if state.slots.is_empty() {
                        state.size = *size;
                    }
                    state.slots.push(slot as u32);
                }
            }
        }
        ids.sort_unstable();
        self.node_images[slot] = ids.into_boxed_slice();
    }

    fn set_node(&mut self, name: &str, node: NodeData) {
        let slot = self.slot_for(name);
        let s = slot as usize;
        if !self.present[s] {
            self.present[s] = true;
            self.nodes += 1;
        }
        self.unschedulable[s] = node.unschedulable;
        self.alloc[s] = node.alloc;
        let mut scalars: Vec<(u32, i64)> = node
            .scalars
            .iter()
            .map(|(k, v)| (self.resources.intern(k), *v))
            .collect();
        scalars.sort_unstable();
        self.scalar_alloc[s] = scalars.into_boxed_slice();
        let mut labels: Vec<(u32, u32)> = node
            .labels
            .iter()
            .map(|(k, v)| (self.strings.intern(k), self.strings.intern(v)))
            .collect();
        labels.sort_unstable();
        self.labels[s] = labels.into_boxed_slice();
        self.refresh_topology(s);
        self.taints[s] = node
            .taints
            .iter()
            .map(|(k, v, e)| Taint {
                key: self.strings.intern(k),
                value: self.strings.intern(v),
                effect: Effect::parse(e),
            })
            .collect();
        self.set_images(s, &node.images);
    }

    fn remove_node(&mut self, name: &str) -> bool {
        let Some(&slot) = self.slots.get(name) else {
            return false;
        };
        let s = slot as usize;
        if !self.present[s] {
            return false;
        }
        self.present[s] = false;
        self.nodes -= 1;
        self.set_images(s, &[]);
        self.labels[s] = Box::default();
        self.refresh_topology(s);
        self.taints[s] = Box::default();
        self.scalar_alloc[s] = Box::default();
        self.alloc[s] = [0; 4];
        self.unschedulable[s] = false;
        self.release_if_empty(slot);
        true
    }

    fn add_pod(&mut self, key: &str, node: &str, spec: &Spec) {
        self.remove_pod(key);
        let slot = self.slot_for(node);
        let s = slot as usize;
        let r = &spec.requests;
        for i in 0..3 {
            self.req[s][i] += r.base[i];
        }
        for i in 0..2 {
            self.nonzero[s][i] += r.nonzero[i];
        }
        self.pods[s] += 1;
        let scalars: Box<[(u32, i64)]> = r
            .scalars
            .iter()
            .map(|(k, v)| (self.resources.intern(k), *v))
            .collect();
        for &(id, v) in scalars.iter() {
            let row = &mut self.scalar_req[s];
            match row.iter_mut().find(|(k, _)| *k == id) {
                Some(entry) => entry.1 += v,
                None => row.push((id, v)),
            }
        }
        let ports: Box<[(u32, u32, i32)]> = spec
            .ports
            .iter()
            .map(|(ip, proto, port)| (self.strings.intern(ip), self.strings.intern(proto), *port))
            .collect();
        for &(ip, proto, port) in ports.iter() {
            let row = &mut self.ports[s];
            match row
                .iter_mut()
                .find(|u| u.ip == ip && u.proto == proto && u.port == port)
            {
                Some(entry) => entry.count += 1,
                None => row.push(PortUse {
                    ip,
                    proto,
                    port,
                    count: 1,
                }),
            }
        }
        let spread = (!spec.spread_key.is_empty()).then(|| Box::<str>::from(&*spec.spread_key));
        if let Some(k) = &spread {
            *self
                .spread
                .entry(k.clone())
                .or_default()
                .entry(slot)
                .or_insert(0) += 1;
        }
        let mut labels: Vec<(u32, u32)> = spec
            .labels
            .iter()
            .map(|(k, v)| (self.strings.intern(k), self.strings.intern(v)))
            .collect();
        labels.sort_unstable();
        let anti: Box<[RPodTerm]> = spec
            .anti_affinity
            .iter()
            .map(|term| term.resolve(|x| self.strings.intern(x)))
            .collect();
        for term in spec.affinity.iter().chain(&spec.anti_affinity) {
            let key = self.strings.intern(&term.topology_key);
            self.register_topology(key);
        }
        let id = match self.free_pods.pop() {
            Some(id) => id,
            None => {
                self.pods_of.push(None);
                (self.pods_of.len() - 1) as u32
            }
        };
        if !anti.is_empty() {
            self.anti_pods.insert(id);
        }
        self.pod_ids.insert(key.into(), id);
        self.pods_of[id as usize] = Some(PodRec {
            slot,
            namespace: self.strings.intern(&spec.namespace),
            labels: labels.into_boxed_slice(),
            base: r.base,
            nonzero: r.nonzero,
            scalars,
            ports,
            spread,
            anti,
        });
    }

    /// Keeps a dense column of label `key` from now on.
    fn register_topology(&mut self, key: u32) {
        if self.topology.contains_key(&key) {
            return;
        }
        let column = (0..self.name.len())
            .map(|s| self.node_label(s, key).unwrap_or(NONE))
            .collect();
        self.topology.insert(key, column);
    }

    /// A node's value of a topology label, from its column when there is one.
    fn topology_value(&self, s: usize, key: u32) -> Option<u32> {
        match self.topology.get(&key) {
            Some(column) => Some(column[s]).filter(|&v| v != NONE),
            None => self.node_label(s, key),
        }
    }

    fn refresh_topology(&mut self, s: usize) {
        let labels = &self.labels[s];
        for (key, column) in self.topology.iter_mut() {
            column[s] = labels
                .binary_search_by(|(k, _)| k.cmp(key))
                .map_or(NONE, |i| labels[i].1);
        }
    }

    fn remove_pod(&mut self, key: &str) -> bool {
        let Some(id) = self.pod_ids.remove(key) else {
            return false;
        };
        let Some(rec) = self.pods_of[id as usize].take() else {
            return false;
        };
        self.free_pods.push(id);
        self.anti_pods.remove(&id);
        let s = rec.slot as usize;
        for i in 0..3 {
            self.req[s][i] -= rec.base[i];
        }
        for i in 0..2 {
            self.nonzero[s][i] -= rec.nonzero[i];
        }
        self.pods[s] -= 1;
        for &(id, v) in rec.scalars.iter() {
            if let Some(entry) = self.scalar_req[s].iter_mut().find(|(k, _)| *k == id) {
                entry.1 -= v;
            }
        }
        self.scalar_req[s].retain(|(_, v)| *v != 0);
        for &(ip, proto, port) in rec.ports.iter() {
            let row = &mut self.ports[s];
            if let Some(i) = row
                .iter()
                .position(|u| u.ip == ip && u.proto == proto && u.port == port)
            {
                row[i].count -= 1;
                if row[i].count == 0 {
                    row.swap_remove(i);
                }
            }
        }
        if let Some(k) = &rec.spread {
            if let Some(per_slot) = self.spread.get_mut(k) {
                if let Some(n) = per_slot.get_mut(&rec.slot) {
                    *n -= 1;
                    if *n == 0 {
                        per_slot.remove(&rec.slot);
                    }
                }
                if per_slot.is_empty() {
                    self.spread.remove(k);
                }
            }
        }
        self.release_if_empty(rec.slot);
        true
    }

    fn node_label(&self, slot: usize, key: u32) -> Option<u32> {
        let labels = &self.labels[slot];
        labels
            .binary_search_by(|(k, _)| k.cmp(&key))
            .ok()
            .map(|i| labels[i].1)
    }
}

// ------------------------------------------------------------------------- configuration

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Strategy {
    LeastAllocated,
    MostAllocated,
}

#[derive(Clone, Debug)]
struct Config {
    filters: [bool; 7],
    weights: [i64; 6],
    strategy: Strategy,
    /// (index into cpu/memory/ephemeral-storage, weight) for NodeResourcesFit's score.
    fit_resources: Vec<(usize, i64)>,
    /// Resources BalancedAllocation compares.
    balanced_resources: Vec<usize>,
}

// ---------------------------------------------------------------------- one pod, resolved

/// A node term with its strings replaced by the table's ids.
struct RTerm {
    /// (key id, op, value ids, bound); a key the table never saw is NONE.
    exprs: Vec<(u32, Op, Vec<u32>, i64)>,
    fields: Vec<(bool, Op, String)>,
    valid: bool,
}

/// The incoming pod against one table: ids looked up once, inter-pod state computed once.
struct Resolved<'a> {
    spec: &'a Spec,
    tolerates_unschedulable: bool,
    node_selector: Vec<(u32, u32)>,
    required: Option<Vec<RTerm>>,
    preferred: Vec<(i64, RTerm)>,
    /// Taints are compared as ids: (key id or None for "any key", exists, value id, effect).
    tolerations: Vec<(Option<u32>, Option<bool>, u32, Effect)>,
    ports: Vec<(u32, u32, i32)>,
    all_ips: u32,
    scalars: Vec<(u32, i64)>,
    /// (image id, its spread-scaled size) of each container image the table knows.
    images: Vec<(u32, i64)>,
    /// Names NodeAffinity's PreFilter restricts the pod to (None: every node).
    names: Option<HashSet<&'a str>>,
    interpod: Option<InterPod>,
}

/// InterPodAffinity's PreFilter state: topology pairs as (key id, value id).
#[derive(Default)]
struct InterPod {
    affinity_keys: Vec<u32>,
    affinity_counts: IdMap<(u32, u32), u32>,
    self_match: bool,
    anti_keys: Vec<u32>,
    anti_pairs: IdSet<(u32, u32)>,
    /// Domains existing pods' anti-affinity keeps this pod out of, by topology key.
    existing: Vec<(u32, IdSet<u32>)>,
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

fn resolve<'a>(t: &Table, spec: &'a Spec) -> Resolved<'a> {
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
    let mut labels: Vec<(u32, u32)> = spec
        .labels
        .iter()
        .map(|(k, v)| (t.strings.get(k), t.strings.get(v)))
        .collect();
    labels.sort_unstable();
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

// ------------------------------------------------------------------------------- filters

/// Why one node cannot take the pod: the rejecting plugin's reasons as mask bits.
struct Failure {
    mask: u64,
    unresolvable: bool,
}

fn fail(bit: u32, unresolvable: bool) -> Option<Failure> {
    Some(Failure {
        mask: 1 << bit,
        unresolvable,
    })
}

impl Table {
    fn term_matches(&self, s: usize, term: &RTerm) -> bool {
        term.valid
            && term.exprs.iter().all(|(key, op, vals, num)| {
                let value = if *key == NONE {
                    None
                } else {
                    self.node_label(s, *key)
                };
                match (op, value) {
                    (Op::In, Some(v)) => vals.contains(&v),
                    (Op::In, None) => false,
                    (Op::NotIn, Some(v)) => !vals.contains(&v),
                    (Op::NotIn, None) => true,
                    (Op::Exists, v) => v.is_some(),
                    (Op::DoesNotExist, v) => v.is_none(),
                    (Op::Gt, Some(v)) => self.strings.str(v).parse::<i64>().is_ok_and(|n| n > *num),
                    (Op::Lt, Some(v)) => self.strings.str(v).parse::<i64>().is_ok_and(|n| n < *num),
                    (Op::Gt | Op::Lt, None) => false,
                }
            })
            && term.fields.iter().all(|(is_name, op, value)| {
                let field = if *is_name { &*self.name[s] } else { "" };
                match op {
                    Op::In => field == value,
                    _ => field != value,
                }
            })
    }

    fn tolerated(&self, pod: &Resolved, taint: &Taint) -> bool {
        pod.tolerations.iter().any(|&(key, exists, value, effect)| {
            (effect == Effect::Any || effect == taint.effect)
                && key.is_none_or(|k| k == taint.key)
                && match exists {
                    Some(true) => true,
                    Some(false) => value == taint.value,
                    None => false,
                }
        })
    }

    fn port_conflict(&self, s: usize, all_ips: u32, ip: u32, proto: u32, port: i32) -> bool {
        self.ports[s].iter().any(|u| {
            u.proto == proto && u.port == port && (ip == all_ips || u.ip == all_ips || u.ip == ip)
        })
    }

    fn fit(&self, s: usize, pod: &Resolved) -> Option<Failure> {
        let mut mask = 0u64;
        let mut unresolvable = false;
        if self.pods[s] as i64 + 1 > self.alloc[s][3] {
            mask |= 1 << R_TOO_MANY_PODS;
        }
        let base = &pod.spec.requests.base;
        for (i, bit) in [R_CPU, R_MEMORY, R_EPHEMERAL].into_iter().enumerate() {
            let want = base[i];
            if want > 0 && want > self.alloc[s][i] - self.req[s][i] {
                mask |= 1 << bit;
                unresolvable |= want > self.alloc[s][i];
            }
        }
        for (i, &(id, want)) in pod.scalars.iter().enumerate() {
            let lookup =
                |row: &[(u32, i64)]| row.iter().find(|(k, _)| *k == id).map_or(0, |(_, v)| *v);
            let alloc = lookup(&self.scalar_alloc[s]);
            if want > alloc - lookup(&self.scalar_req[s]) {
                mask |= 1 << (R_SCALAR + i as u32);
                unresolvable |= want > alloc;
            }
        }
        (mask != 0).then_some(Failure { mask, unresolvable })
    }

    fn interpod(&self, s: usize, st: &InterPod) -> Option<Failure> {
        if !st.affinity_keys.is_empty() {
            let mut exist = true;
            for &key in &st.affinity_keys {
                match self.topology_value(s, key) {
                    Some(value) => exist &= st.affinity_counts.contains_key(&(key, value)),
                    None => return fail(R_AFFINITY, true),
                }
            }
            // The first pod of a group that selects itself may start it anywhere.
            let first_of_group = st.affinity_counts.is_empty() && st.self_match;
            if !exist && !first_of_group {
                return fail(R_AFFINITY, true);
            }
        }
        if !st.anti_pairs.is_empty() {
            for &key in &st.anti_keys {
                if let Some(value) = self.topology_value(s, key) {
                    if st.anti_pairs.contains(&(key, value)) {
                        return fail(R_ANTI_AFFINITY, false);
                    }
                }
            }
        }
        for (key, values) in &st.existing {
            if self
                .topology_value(s, *key)
                .is_some_and(|v| values.contains(&v))
            {
                return fail(R_EXISTING_ANTI, false);
            }
        }
        None
    }

    /// Runs the filters in upstream's order; None when the node fits.
    fn filter(&self, s: usize, pod: &Resolved, cfg: &Config) -> Option<Failure> {
        let on = &cfg.filters;
        if let Some(names) = &pod.names {
            if on[F_AFFINITY] && !names.contains(&*self.name[s]) {
                return fail(R_PREFILTER, true);
            }
        }
        if on[F_UNSCHEDULABLE] && self.unschedulable[s] && !pod.tolerates_unschedulable {
            return fail(R_UNSCHEDULABLE, true);
        }
        let spec = pod.spec;
        if on[F_NODE_NAME] && !spec.node_name.is_empty() && spec.node_name != *self.name[s] {
            return fail(R_NODE_NAME, true);
        }
        if on[F_TAINT]
            && self.taints[s].iter().any(|taint| {
                matches!(taint.effect, Effect::NoSchedule | Effect::NoExecute)
                    && !self.tolerated(pod, taint)
            })
        {
            return fail(R_TAINT, true);
        }
        if on[F_AFFINITY] {
            let selector_ok = pod
                .node_selector
                .iter()
                .all(|&(k, v)| k != NONE && self.node_label(s, k) == Some(v));
            let affinity_ok = pod
                .required
                .as_ref()
                .is_none_or(|terms| terms.iter().any(|term| self.term_matches(s, term)));
            if !(selector_ok && affinity_ok) {
                return fail(R_NODE_AFFINITY, true);
            }
        }
        if on[F_PORTS]
            && pod.ports.iter().any(|&(ip, proto, port)| {
                proto != NONE && self.port_conflict(s, pod.all_ips, ip, proto, port)
            })
        {
            return fail(R_PORTS, false);
        }
        if on[F_FIT] {
            if let Some(f) = self.fit(s, pod) {
                return Some(f);
            }
        }
        if on[F_INTERPOD] {
            if let Some(st) = &pod.interpod {
                return self.interpod(s, st);
            }
        }
        None
    }
}

// -------------------------------------------------------------------------------- scores

/// Upstream's DefaultNormalizeScore over the feasible nodes.
fn normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().fold(0, i64::max);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let v = MAX_NODE_SCORE * *s / max;
        *s = if reverse { MAX_NODE_SCORE - v } else { v };
    }
}

impl Table {
    fn fit_score(&self, s: usize, pod: &Resolved, cfg: &Config) -> i64 {
        let (mut total, mut weights) = (0i64, 0i64);
        for &(i, weight) in &cfg.fit_resources {
            let alloc = self.alloc[s][i];
            if alloc == 0 {
                continue;
            }
            // cpu and memory count upstream's non-zero defaults; ephemeral storage its requests.
            let requested = if i < 2 {
                self.nonzero[s][i] + pod.spec.requests.nonzero[i]
            } else {
                self.req[s][i] + pod.spec.requests.base[i]
            };
            let score = match cfg.strategy {
                Strategy::LeastAllocated if requested > alloc => 0,
                Strategy::LeastAllocated => (alloc - requested) * MAX_NODE_SCORE / alloc,
                Strategy::MostAllocated => requested.min(alloc) * MAX_NODE_SCORE / alloc,
            };
            total += score * weight;
            weights += weight;
        }
        if weights == 0 {
            0
        } else {
            total / weights
        }
    }

    fn balanced_score(&self, s: usize, pod: &Resolved, cfg: &Config) -> i64 {
        let mut fractions = [0f64; 3];
        let (mut n, mut sum) = (0usize, 0f64);
        for &i in &cfg.balanced_resources {
            let alloc = self.alloc[s][i];
            if alloc == 0 {
                continue;
            }
            let requested = self.req[s][i] + pod.spec.requests.base[i];
            let fraction = (requested as f64 / alloc as f64).min(1.0);
            sum += fraction;
            fractions[n] = fraction;
            n += 1;
        }
        let std = match n {
            2 => ((fractions[0] - fractions[1]) / 2.0).abs(),
            3 => {
                let mean = sum / n as f64;
                let var: f64 = fractions[..n].iter().map(|f| (f - mean) * (f - mean)).sum();
                (var / n as f64).sqrt()
            }
            _ => 0.0,
        };
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }

    /// The scaled sizes of the pod's images each slot holds, summed per container.
    fn image_sums(&self, pod: &Resolved) -> Vec<i64> {
        let mut sums = vec![0i64; self.name.len()];
        for &(id, scaled) in &pod.images {
            for &slot in &self.image_states[id as usize].slots {
                sums[slot as usize] += scaled;
            }
        }
        sums
    }

    fn image_score(sum: i64, containers: usize) -> i64 {
        let max = IMAGE_MAX_PER_CONTAINER * containers as i64;
        let clamped = if sum < IMAGE_MIN {
            IMAGE_MIN
        } else if sum > max {
            max
        } else {
            sum
        };
        MAX_NODE_SCORE * (clamped - IMAGE_MIN) / (max - IMAGE_MIN)
    }

    fn untolerated_prefer(&self, s: usize, pod: &Resolved) -> i64 {
        self.taints[s]
            .iter()
            .filter(|taint| taint.effect == Effect::PreferNoSchedule)
            .filter(|taint| {
                !pod.tolerations.iter().any(|&(key, exists, value, effect)| {
                    matches!(effect, Effect::Any | Effect::PreferNoSchedule)
                        && key.is_none_or(|k| k == taint.key)
                        && match exists {
                            Some(true) => true,
                            Some(false) => value == taint.value,
                            None => false,
                        }
                })
            })
            .count() as i64
    }

    /// Scores of the feasible slots, normalised and unweighted, one row per slot.
    fn score(&self, feasible: &[u32], pod: &Resolved, cfg: &Config) -> Vec<[i64; 6]> {
        let w = &cfg.weights;
        let spec = pod.spec;
        let best_effort = cfg
            .balanced_resources
            .iter()
            .all(|&i| spec.requests.base[i] == 0);
        // Spread counts laid out by slot: one pass over the key's pods, then plain indexing.
        let spread_counts: Option<Vec<u32>> = if w[S_SPREAD] != 0 && !spec.spread_key.is_empty() {
            self.spread.get(spec.spread_key.as_str()).map(|per_slot| {
                let mut dense = vec![0u32; self.name.len()];
                for (&slot, &n) in per_slot {
                    dense[slot as usize] = n;
                }
                dense
            })
        } else {
            None
        };
        let image_sums = (w[S_IMAGE] != 0 && !pod.images.is_empty()).then(|| self.image_sums(pod));
        let containers = spec.images.len();
        let mut rows: Vec<[i64; 6]> = feasible
            .iter()
            .map(|&slot| {
                let s = slot as usize;
                let mut row = [0i64; 6];
                if w[S_FIT] != 0 {
                    row[S_FIT] = self.fit_score(s, pod, cfg);
                }
                if w[S_BALANCED] != 0 && !best_effort {
                    row[S_BALANCED] = self.balanced_score(s, pod, cfg);
                }
                if w[S_IMAGE] != 0 {
                    let sum = image_sums.as_ref().map_or(0, |sums| sums[s]);
                    row[S_IMAGE] = Self::image_score(sum, containers);
                }
                if w[S_AFFINITY] != 0 {
                    row[S_AFFINITY] = pod
                        .preferred
                        .iter()
                        .filter(|(_, term)| self.term_matches(s, term))
                        .map(|(weight, _)| weight)
                        .sum();
                }
                if w[S_TAINT] != 0 {
                    row[S_TAINT] = self.untolerated_prefer(s, pod);
                }
                if let Some(counts) = &spread_counts {
                    row[S_SPREAD] = counts[s] as i64;
                }
                row
            })
            .collect();
        let mut column = |i: usize, f: &dyn Fn(&mut [i64])| {
            let mut col: Vec<i64> = rows.iter().map(|r| r[i]).collect();
            f(&mut col);
            for (r, v) in rows.iter_mut().zip(col) {
                r[i] = v;
            }
        };
        if w[S_AFFINITY] != 0 && !pod.preferred.is_empty() {
            column(S_AFFINITY, &|c| normalize(c, false));
        }
        if w[S_TAINT] != 0 {
            column(S_TAINT, &|c| normalize(c, true));
        }
        if w[S_SPREAD] != 0 && !spec.spread_key.is_empty() {
            column(S_SPREAD, &|c| {
                let max = c.iter().copied().fold(0, i64::max);
                for v in c.iter_mut() {
                    *v = if max > 0 {
                        (MAX_NODE_SCORE as f64 * ((max - *v) as f64 / max as f64)) as i64
                    } else {
                        MAX_NODE_SCORE
                    };
                }
            });
        }
        rows
    }
}

// ------------------------------------------------------------------------------ the call

/// splitmix64: enough randomness to break ties, without a dependency.
fn splitmix(state: &AtomicU64) -> u64 {
    let mut z = state
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Outcome {
    node: Option<String>,
    score: i64,
    feasible: usize,
    nodes: usize,
    histogram: Vec<(String, u32)>,
    unresolvable: usize,
    rejected_by: Vec<&'static str>,
    prefilter: Option<&'static str>,
}

/// Per node: (name, reasons (empty if feasible), unresolvable, scores).
type NodeVerdict = (String, Vec<String>, bool, Option<[i64; 6]>);

impl Table {
    fn reason_text(&self, bit: u32, pod: &Resolved) -> String {
        if bit < R_SCALAR {
            return REASONS[bit as usize].to_string();
        }
        let name = &pod.spec.requests.scalars[(bit - R_SCALAR) as usize].0;
        format!("Insufficient {name}")
    }

    fn candidates(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.name.len()).filter(|&s| self.present[s])
    }

    fn conflict(pod: &Resolved) -> bool {
        pod.names.as_ref().is_some_and(|n| n.is_empty())
    }

    fn schedule(&self, spec: &Spec, cfg: &Config, mut random: impl FnMut() -> u64) -> Outcome {
        let pod = resolve(self, spec);
        let mut out = Outcome {
            node: None,
            score: 0,
            feasible: 0,
            nodes: self.nodes,
            histogram: Vec::new(),
            unresolvable: 0,
            rejected_by: Vec::new(),
            prefilter: None,
        };
        if cfg.filters[F_AFFINITY] && Self::conflict(&pod) {
            out.prefilter = Some(CONFLICT);
            out.unresolvable = self.nodes;
            out.rejected_by.push(FILTERS[F_AFFINITY]);
            return out;
        }
        let mut counts = [0u32; 64];
        let mut plugins = [false; 7];
        let mut feasible: Vec<u32> = Vec::new();
        for s in self.candidates() {
            match self.filter(s, &pod, cfg) {
                None => feasible.push(s as u32),
                Some(f) => {
                    out.unresolvable += f.unresolvable as usize;
                    let mut mask = f.mask;
                    while mask != 0 {
                        let bit = mask.trailing_zeros();
                        counts[bit as usize] += 1;
                        plugins[plugin_of(bit)] = true;
                        mask &= mask - 1;
                    }
                }
            }
        }
        out.feasible = feasible.len();
        out.histogram = (0..64u32)
            .filter(|&b| counts[b as usize] > 0)
            .map(|b| (self.reason_text(b, &pod), counts[b as usize]))
            .collect();
        out.rejected_by = (0..7).filter(|&i| plugins[i]).map(|i| FILTERS[i]).collect();
        if feasible.is_empty() {
            return out;
        }
        let rows = self.score(&feasible, &pod, cfg);
        // Reservoir sampling over the best: each of k tied nodes is chosen with chance 1/k.
        let (mut best, mut best_score, mut ties) = (0usize, i64::MIN, 0u64);
        for (i, row) in rows.iter().enumerate() {
            let total: i64 = row.iter().zip(&cfg.weights).map(|(s, w)| s * w).sum();
            if total > best_score {
                (best, best_score, ties) = (i, total, 1);
            } else if total == best_score {
                ties += 1;
                if random().is_multiple_of(ties) {
                    best = i;
                }
            }
        }
        out.node = Some(self.name[feasible[best] as usize].to_string());
        out.score = best_score;
        out
    }

    fn evaluate(&self, spec: &Spec, cfg: &Config) -> Vec<NodeVerdict> {
        let pod = resolve(self, spec);
        let conflict = cfg.filters[F_AFFINITY] && Self::conflict(&pod);
        let mut verdicts: Vec<NodeVerdict> = Vec::new();
        let mut feasible: Vec<u32> = Vec::new();
        for s in self.candidates() {
            let name = self.name[s].to_string();
            if conflict {
                verdicts.push((name, vec![CONFLICT.to_string()], true, None));
                continue;
            }
            match self.filter(s, &pod, cfg) {
                None => {
                    feasible.push(s as u32);
                    verdicts.push((name, Vec::new(), false, None));
                }
                Some(f) => {
                    let reasons = (0..64u32)
                        .filter(|b| f.mask & (1 << b) != 0)
                        .map(|b| self.reason_text(b, &pod))
                        .collect();
                    verdicts.push((name, reasons, f.unresolvable, None));
                }
            }
        }
        let rows = self.score(&feasible, &pod, cfg);
        let mut rows = rows.into_iter();
        for v in verdicts.iter_mut().filter(|v| v.1.is_empty()) {
            v.3 = rows.next();
        }
        verdicts
    }
}

// ---------------------------------------------------------------------------- Python face

/// What one schedule() call decided.
#[pyclass(frozen, get_all, module = "k8slite._native")]
pub struct ScheduleResult {
    node: Option<String>,
    score: i64,
    feasible: usize,
    nodes: usize,
    reasons: Vec<(String, u32)>,
    unresolvable: usize,
    rejected_by: Vec<&'static str>,
    prefilter: Option<&'static str>,
}

#[pymethods]
impl ScheduleResult {
    fn __repr__(&self) -> String {
        let node = self
            .node
            .as_ref()
            .map_or("None".to_string(), |n| format!("'{n}'"));
        let reasons: Vec<String> = self
            .reasons
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        format!(
            "ScheduleResult(node={node}, score={}, feasible={}/{}, reasons=[{}])",
            self.score,
            self.feasible,
            self.nodes,
            reasons.join(", ")
        )
    }
}

/// The columnar node table the scheduler keeps in step with its informers.
#[pyclass(frozen, module = "k8slite._native")]
pub struct NodeTable {
    inner: RwLock<Table>,
    config: Config,
    seed: AtomicU64,
}

fn int_of(map: &HashMap<String, i64>, key: &str) -> i64 {
    map.get(key).copied().unwrap_or(0)
}

impl NodeTable {
    // Never block on the lock while holding the GIL: a schedule() in another thread holds it
    // with the GIL released (the same discipline as the watch cache).
    fn read(&self, py: Python<'_>) -> RwLockReadGuard<'_, Table> {
        loop {
            match self.inner.try_read() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => py.detach(|| drop(self.inner.read())),
            }
        }
    }

    fn write(&self, py: Python<'_>) -> RwLockWriteGuard<'_, Table> {
        loop {
            match self.inner.try_write() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => py.detach(|| drop(self.inner.write())),
            }
        }
    }

    fn read_detached(&self) -> RwLockReadGuard<'_, Table> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }
}

fn parse_config(
    weights: Option<HashMap<String, i64>>,
    strategy: &str,
    resources: Option<Vec<(String, i64)>>,
    balanced_resources: Option<Vec<String>>,
    disabled: Vec<String>,
) -> PyResult<Config> {
    let mut cfg = Config {
        filters: [true; 7],
        weights: DEFAULT_WEIGHTS,
        strategy: match strategy {
            "LeastAllocated" => Strategy::LeastAllocated,
            "MostAllocated" => Strategy::MostAllocated,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown scoring strategy {other:?} (LeastAllocated or MostAllocated)"
                )))
            }
        },
        fit_resources: vec![(0, 1), (1, 1)],
        balanced_resources: vec![0, 1],
    };
    let resource = |name: &str| {
        resource_index(name).ok_or_else(|| {
            PyValueError::new_err(format!(
                "unsupported scoring resource {name:?} (cpu, memory or ephemeral-storage)"
            ))
        })
    };
    for (name, weight) in weights.unwrap_or_default() {
        let Some(i) = SCORES.iter().position(|s| *s == name) else {
            return Err(PyValueError::new_err(format!(
                "unknown score plugin {name:?}"
            )));
        };
        cfg.weights[i] = weight;
    }
    if let Some(list) = resources {
        cfg.fit_resources = list
            .iter()
            .map(|(name, w)| Ok((resource(name)?, *w)))
            .collect::<PyResult<_>>()?;
    }
    if let Some(list) = balanced_resources {
        cfg.balanced_resources.clear();
        for name in list {
            let i = resource(&name)?;
            if !cfg.balanced_resources.contains(&i) {
                cfg.balanced_resources.push(i);
            }
        }
    }
    for name in disabled {
        let Some(i) = FILTERS.iter().position(|f| *f == name) else {
            if SCORES.contains(&name.as_str()) {
                let i = SCORES.iter().position(|s| *s == name).unwrap_or_default();
                cfg.weights[i] = 0;
                continue;
            }
            return Err(PyValueError::new_err(format!("unknown plugin {name:?}")));
        };
        cfg.filters[i] = false;
    }
    Ok(cfg)
}

#[pymethods]
impl NodeTable {
    #[new]
    #[pyo3(signature = (*, weights = None, strategy = "LeastAllocated", resources = None,
        balanced_resources = None, disabled = Vec::new()))]
    fn py_new(
        weights: Option<HashMap<String, i64>>,
        strategy: &str,
        resources: Option<Vec<(String, i64)>>,
        balanced_resources: Option<Vec<String>>,
        disabled: Vec<String>,
    ) -> PyResult<Self> {
        let config = parse_config(weights, strategy, resources, balanced_resources, disabled)?;
        let mut table = Table::default();
        // Interned up front so that an empty taint value and the bind-all address resolve.
        table.strings.intern("");
        table.strings.intern("0.0.0.0");
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ok(NodeTable {
            inner: RwLock::new(table),
            config,
            seed: AtomicU64::new(seed),
        })
    }

    /// Adds or replaces a node; the accounting of pods already on it is kept.
    // Keyword arguments mirroring the node fields the kernel keeps.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (name, *, allocatable, labels = None, taints = Vec::new(),
        unschedulable = false, images = Vec::new()))]
    fn set_node(
        &self,
        py: Python<'_>,
        name: &str,
        allocatable: HashMap<String, i64>,
        labels: Option<HashMap<String, String>>,
        taints: Vec<(String, String, String)>,
        unschedulable: bool,
        images: Vec<(Vec<String>, i64)>,
    ) {
        let scalars = allocatable
            .iter()
            .filter(|(k, _)| resource_index(k).is_none() && *k != "pods")
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let data = NodeData {
            alloc: [
                int_of(&allocatable, "cpu"),
                int_of(&allocatable, "memory"),
                int_of(&allocatable, "ephemeral-storage"),
                int_of(&allocatable, "pods"),
            ],
            scalars,
            labels: labels.unwrap_or_default().into_iter().collect(),
            taints,
            unschedulable,
            images,
        };
        self.write(py).set_node(name, data);
    }

    /// Forgets a node; pods still accounted to it wait for it as a ghost.
    fn remove_node(&self, py: Python<'_>, name: &str) -> bool {
        self.write(py).remove_node(name)
    }

    /// Accounts a bound or assumed pod to a node (replacing an earlier account of `key`).
    fn add_pod(&self, py: Python<'_>, key: &str, node: &str, spec: &Bound<'_, PodSpec>) {
        self.write(py).add_pod(key, node, &spec.get().spec);
    }

    /// Undoes add_pod; False if the pod was not accounted.
    fn remove_pod(&self, py: Python<'_>, key: &str) -> bool {
        self.write(py).remove_pod(key)
    }

    /// The node a pod is accounted to, if any.
    fn pod_node(&self, py: Python<'_>, key: &str) -> Option<String> {
        let t = self.read(py);
        let rec = t
            .pod_ids
            .get(key)
            .and_then(|&id| t.pods_of[id as usize].as_ref());
        rec.map(|rec| t.name[rec.slot as usize].to_string())
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.read(py).nodes
    }

    fn __contains__(&self, py: Python<'_>, name: &str) -> bool {
        let t = self.read(py);
        t.slots.get(name).is_some_and(|&s| t.present[s as usize])
    }

    /// Number of pods accounted (bound and assumed).
    fn pod_count(&self, py: Python<'_>) -> usize {
        self.read(py).pod_ids.len()
    }

    /// A node's accounting: allocatable and requested resources, pods, used host ports.
    fn node_info<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Option<Bound<'py, PyDict>>> {
        let t = self.read(py);
        let Some(&slot) = t.slots.get(name) else {
            return Ok(None);
        };
        let s = slot as usize;
        let d = PyDict::new(py);
        let keys = ["cpu", "memory", "ephemeral-storage"];
        let alloc = PyDict::new(py);
        let req = PyDict::new(py);
        for (i, k) in keys.iter().enumerate() {
            alloc.set_item(k, t.alloc[s][i])?;
            req.set_item(k, t.req[s][i])?;
        }
        alloc.set_item("pods", t.alloc[s][3])?;
        for &(id, v) in t.scalar_alloc[s].iter() {
            alloc.set_item(t.resources.str(id), v)?;
        }
        for &(id, v) in t.scalar_req[s].iter() {
            req.set_item(t.resources.str(id), v)?;
        }
        d.set_item("present", t.present[s])?;
        d.set_item("allocatable", alloc)?;
        d.set_item("requested", req)?;
        d.set_item("nonzero_requested", (t.nonzero[s][0], t.nonzero[s][1]))?;
        d.set_item("pods", t.pods[s])?;
        let ports: Vec<(String, String, i32)> = t.ports[s]
            .iter()
            .map(|u| {
                (
                    t.strings.str(u.ip).into(),
                    t.strings.str(u.proto).into(),
                    u.port,
                )
            })
            .collect();
        d.set_item("ports", ports)?;
        Ok(Some(d))
    }

    /// Filter and score every node for `pod` and pick the best (ties at random); the GIL is
    /// released throughout. `seed` makes the tie-break reproducible.
    #[pyo3(signature = (pod, seed = None))]
    fn schedule(
        &self,
        py: Python<'_>,
        pod: &Bound<'_, PodSpec>,
        seed: Option<u64>,
    ) -> ScheduleResult {
        let spec = &pod.get().spec;
        let out = py.detach(|| {
            let local = AtomicU64::new(seed.unwrap_or(0));
            let state = if seed.is_some() { &local } else { &self.seed };
            self.read_detached()
                .schedule(spec, &self.config, || splitmix(state))
        });
        ScheduleResult {
            node: out.node,
            score: out.score,
            feasible: out.feasible,
            nodes: out.nodes,
            reasons: out.histogram,
            unresolvable: out.unresolvable,
            rejected_by: out.rejected_by,
            prefilter: out.prefilter,
        }
    }

    /// Every node's verdict for `pod`: (name, reasons, unresolvable, scores); reasons is empty
    /// for a feasible node, whose scores map each enabled score plugin to its normalised
    /// (unweighted) score. For tests and diagnosis; schedule() is the fast path.
    #[allow(clippy::type_complexity)]
    fn evaluate(
        &self,
        py: Python<'_>,
        pod: &Bound<'_, PodSpec>,
    ) -> Vec<(
        String,
        Vec<String>,
        bool,
        Option<HashMap<&'static str, i64>>,
    )> {
        let spec = &pod.get().spec;
        let verdicts = py.detach(|| self.read_detached().evaluate(spec, &self.config));
        let weights = self.config.weights;
        verdicts
            .into_iter()
            .map(|(name, reasons, unresolvable, scores)| {
                let scores = scores.map(|row| {
                    (0..6)
                        .filter(|&i| weights[i] != 0)
                        .map(|i| (SCORES[i], row[i]))
                        .collect()
                });
                (name, reasons, unresolvable, scores)
            })
            .collect()
    }

    /// The score plugins and their weights, as configured.
    #[getter]
    fn weights(&self) -> HashMap<&'static str, i64> {
        SCORES.iter().copied().zip(self.config.weights).collect()
    }
}

/// Adds the kernel's classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PodSpec>()?;
    m.add_class::<NodeTable>()?;
    m.add_class::<ScheduleResult>()?;
    Ok(())
}
