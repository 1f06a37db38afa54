//! The Python face: NodeTable and ScheduleResult.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::*;
use crate::gillock;

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
    // A schedule() in another thread holds the lock with the GIL released.
    fn read(&self, py: Python<'_>) -> RwLockReadGuard<'_, Table> {
        gillock::read(py, &self.inner)
    }

    fn write(&self, py: Python<'_>) -> RwLockWriteGuard<'_, Table> {
        gillock::write(py, &self.inner)
    }

    fn read_detached(&self) -> RwLockReadGuard<'_, Table> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }
}

pub(super) fn parse_config(
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
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ok(NodeTable {
            inner: RwLock::new(Table::new()),
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

/// Adds the kernel's classes to the module, and its plugin names and default weights, which
/// the Python side (the profile, the reference twin) reads instead of keeping its own list.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("FILTER_PLUGINS", PyTuple::new(py, FILTERS)?)?;
    m.add(
        "DEFAULT_WEIGHTS",
        PyTuple::new(py, SCORES.iter().zip(DEFAULT_WEIGHTS))?,
    )?;
    m.add_class::<PodSpec>()?;
    m.add_class::<NodeTable>()?;
    m.add_class::<ScheduleResult>()?;
    Ok(())
}
