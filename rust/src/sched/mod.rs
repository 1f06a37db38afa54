//! The scheduler's kernel: a columnar table of nodes kept in step with the informers, and the
//! filter and score of every node for one pod in one call, with the GIL released.
//!
//! The semantics are those of kube-scheduler's default profile (NodeUnschedulable, NodeName,
//! TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit, InterPodAffinity filters; the
//! NodeResourcesFit, NodeResourcesBalancedAllocation, ImageLocality, NodeAffinity and
//! TaintToleration scores) plus a simple SelectorSpread score. A readable Python twin lives in
//! tests/reference/scheduler.py and is the oracle of the property tests.

// The kernel in parts: spec (one pod's requirements), table (the nodes and the pods on
// them), resolve, filter, score and select (one call), python (the face). Each part does
// `use super::*`: it sees the constants below and, through these imports, the others' items.
mod filter;
mod intern;
mod python;
mod resolve;
mod score;
mod select;
mod spec;
mod table;

use intern::*;
pub use python::register;
use resolve::*;
use select::*;
use spec::*;
use table::*;

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

#[cfg(test)]
mod tests;
