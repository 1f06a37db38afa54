//! The filters, node by node, each failure as a bit of upstream's reasons.

use super::*;

/// Why one node cannot take the pod: the rejecting plugin's reasons as mask bits.
pub(super) struct Failure {
    pub(super) mask: u64,
    pub(super) unresolvable: bool,
}

fn fail(bit: u32, unresolvable: bool) -> Option<Failure> {
    Some(Failure {
        mask: 1 << bit,
        unresolvable,
    })
}

impl Table {
    pub(super) fn term_matches(&self, s: usize, term: &RTerm) -> bool {
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

    pub(super) fn interpod(&self, s: usize, st: &InterPod) -> Option<Failure> {
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
    pub(super) fn filter(&self, s: usize, pod: &Resolved, cfg: &Config) -> Option<Failure> {
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
