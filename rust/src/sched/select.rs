//! One schedule call: filter every node, score the feasible ones, pick the best.

use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

/// splitmix64: enough randomness to break ties, without a dependency.
pub(super) fn splitmix(state: &AtomicU64) -> u64 {
    let mut z = state
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(super) struct Outcome {
    pub(super) node: Option<String>,
    pub(super) score: i64,
    pub(super) feasible: usize,
    pub(super) nodes: usize,
    pub(super) histogram: Vec<(String, u32)>,
    pub(super) unresolvable: usize,
    pub(super) rejected_by: Vec<&'static str>,
    pub(super) prefilter: Option<&'static str>,
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

    pub(super) fn conflict(pod: &Resolved) -> bool {
        pod.names.as_ref().is_some_and(|n| n.is_empty())
    }

    pub(super) fn schedule(
        &self,
        spec: &Spec,
        cfg: &Config,
        mut random: impl FnMut() -> u64,
    ) -> Outcome {
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

    pub(super) fn evaluate(&self, spec: &Spec, cfg: &Config) -> Vec<NodeVerdict> {
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
