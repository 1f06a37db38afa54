//! The columnar node table: per-node columns by slot, and the pods accounted on them.

use std::collections::HashMap;

use super::*;

#[derive(Clone, Copy, Debug)]
pub(super) struct Taint {
    pub(super) key: u32,
    pub(super) value: u32,
    pub(super) effect: Effect,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct PortUse {
    pub(super) ip: u32,
    pub(super) proto: u32,
    pub(super) port: i32,
    pub(super) count: u32,
}

pub(super) struct ImageState {
    pub(super) size: i64,
    /// Slots of the nodes that hold the image (ImageLocality looks up by image, not by node).
    pub(super) slots: Vec<u32>,
}

/// A bound or assumed pod, as far as node accounting and inter-pod affinity need it.
pub(super) struct PodRec {
    pub(super) slot: u32,
    pub(super) namespace: u32,
    /// Sorted by key id.
    pub(super) labels: Box<[(u32, u32)]>,
    pub(super) base: [i64; 3],
    pub(super) nonzero: [i64; 2],
    pub(super) scalars: Box<[(u32, i64)]>,
    pub(super) ports: Box<[(u32, u32, i32)]>,
    pub(super) spread: Option<Box<str>>,
    pub(super) anti: Box<[RPodTerm]>,
}

/// Per-node columns (struct of arrays), indexed by slot. A slot whose node object is gone
/// (or not yet seen) but which still has pods is kept as a ghost: not a candidate, but its
/// accounting survives until the node returns or the pods go.
#[derive(Default)]
pub(super) struct Table {
    pub(super) strings: Interner,
    pub(super) resources: Interner,
    pub(super) images: Interner,
    pub(super) image_states: Vec<ImageState>,
    pub(super) slots: HashMap<Box<str>, u32>,
    pub(super) free: Vec<u32>,
    pub(super) nodes: usize,

    pub(super) name: Vec<Box<str>>,
    pub(super) present: Vec<bool>,
    pub(super) unschedulable: Vec<bool>,
    /// cpu (milli), memory, ephemeral-storage, pods.
    pub(super) alloc: Vec<[i64; 4]>,
    /// cpu, memory, ephemeral-storage requested by bound and assumed pods.
    pub(super) req: Vec<[i64; 3]>,
    pub(super) nonzero: Vec<[i64; 2]>,
    pub(super) pods: Vec<u32>,
    pub(super) scalar_alloc: Vec<Box<[(u32, i64)]>>,
    pub(super) scalar_req: Vec<Vec<(u32, i64)>>,
    /// Sorted by key id.
    pub(super) labels: Vec<Box<[(u32, u32)]>>,
    pub(super) taints: Vec<Box<[Taint]>>,
    pub(super) ports: Vec<Vec<PortUse>>,
    /// Sorted image ids.
    pub(super) node_images: Vec<Box<[u32]>>,

    /// Pods by key, kept in a slab (`pods_of`) so that scans walk a plain vector.
    pub(super) pod_ids: HashMap<Box<str>, u32>,
    pub(super) pods_of: Vec<Option<PodRec>>,
    pub(super) free_pods: Vec<u32>,
    /// Keys of pods with required anti-affinity terms (checked against every incoming pod).
    pub(super) anti_pods: IdSet<u32>,
    /// Label columns (key id -> value id per slot, NONE when absent) for the topology keys
    /// pod (anti-)affinity terms use: read once per node per pod, so kept dense.
    pub(super) topology: IdMap<u32, Vec<u32>>,
    /// Spread key -> slot -> pods with that key on the slot.
    pub(super) spread: HashMap<Box<str>, IdMap<u32, u32>>,
}

/// A node as set_node receives it.
pub(super) struct NodeData {
    pub(super) alloc: [i64; 4],
    pub(super) scalars: Vec<(String, i64)>,
    pub(super) labels: Vec<(String, String)>,
    pub(super) taints: Vec<(String, String, String)>,
    pub(super) unschedulable: bool,
    pub(super) images: Vec<(Vec<String>, i64)>,
}

impl Table {
    /// An empty table. The empty string and the bind-all address are interned up front so
    /// that an empty taint value and a pod port without hostIP resolve.
    pub(super) fn new() -> Table {
        let mut table = Table::default();
        table.strings.intern("");
        table.strings.intern("0.0.0.0");
        table
    }

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

    pub(super) fn set_node(&mut self, name: &str, node: NodeData) {
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
        let labels = label_ids(&node.labels, |x| self.strings.intern(x));
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

    pub(super) fn remove_node(&mut self, name: &str) -> bool {
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

    pub(super) fn add_pod(&mut self, key: &str, node: &str, spec: &Spec) {
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
        let labels = label_ids(&spec.labels, |x| self.strings.intern(x));
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
    pub(super) fn topology_value(&self, s: usize, key: u32) -> Option<u32> {
        match self.topology.get(&key) {
            Some(column) => Some(column[s]).filter(|&v| v != NONE),
            None => self.node_label(s, key),
        }
    }

    fn refresh_topology(&mut self, s: usize) {
        let labels = &self.labels[s];
        for (key, column) in self.topology.iter_mut() {
            column[s] = label_value(labels, *key).unwrap_or(NONE);
        }
    }

    pub(super) fn remove_pod(&mut self, key: &str) -> bool {
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

    pub(super) fn node_label(&self, slot: usize, key: u32) -> Option<u32> {
        label_value(&self.labels[slot], key)
    }
}
