//! The scores, each normalised to 0..=100 over the feasible nodes and weighted.

use super::*;

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

    pub(super) fn image_score(sum: i64, containers: usize) -> i64 {
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
    pub(super) fn score(&self, feasible: &[u32], pod: &Resolved, cfg: &Config) -> Vec<[i64; 6]> {
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
