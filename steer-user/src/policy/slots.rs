//! The slot table of a balanced policy: `LB_SLOTS` slots, each owned by one member, that a
//! flow's hash picks from.
//!
//! What the table guarantees, whatever the members are called:
//!
//! - **Exact shares**: with every member up, each member owns its weight's share of the slots
//!   to within one slot (largest remainder); with one member down, so do the others.
//! - **Minimal movement**: when a member goes down only its own slots change hands; when it
//!   comes back the table is exactly what it was.
//!
//! Every slot carries a preference order over the members, and the table for a set of up
//! members gives each slot to the first of them in its order. That alone gives minimal movement
//! and restoration for any set of failures. The orders are built level by level so the shares
//! come out right: the first choices apportion all slots by weight; the second choices of the
//! slots a member owns apportion them among the others so that, with that member down, every
//! other member reaches its exact share; deeper choices apportion each group of slots by
//! weight among the members not yet in its order (with two or more down, shares stay within a
//! few slots). Within a group the members are interleaved over the slots, not in runs.

use steer_common::LB_SLOTS;

const N: usize = LB_SLOTS as usize;

/// For every slot, the index of the member that owns it, given each member's weight and
/// whether it is up; `None` when no member is up.
pub fn owners(weights: &[u32], up: &[bool]) -> Option<[usize; N]> {
    if !up.iter().any(|u| *u) {
        return None;
    }
    let prefs = preferences(weights);
    let mut out = [0; N];
    for (slot, order) in out.iter_mut().zip(&prefs) {
        *slot = *order.iter().find(|m| up[**m])?;
    }
    Some(out)
}

/// Every slot's preference order over the members (indices into `weights`).
pub fn preferences(weights: &[u32]) -> Vec<Vec<usize>> {
    let n = weights.len();
    let mut prefs: Vec<Vec<usize>> = (0..N).map(|_| Vec::with_capacity(n)).collect();
    // Groups of slots that share the same choices so far, with those choices.
    let mut groups: Vec<(Vec<usize>, Vec<usize>)> = vec![((0..N).collect(), Vec::new())];
    let first = apportion(N, weights);
    for level in 0..n {
        let mut next = Vec::new();
        for (slots, chosen) in groups {
            let remaining: Vec<usize> = (0..n).filter(|m| !chosen.contains(m)).collect();
            let quotas = match level {
                0 => first.clone(),
                1 => second_choices(weights, &first, chosen[0], slots.len()),
                _ => {
                    let w: Vec<u32> = remaining.iter().map(|m| weights[*m]).collect();
                    let q = apportion(slots.len(), &w);
                    let mut full = vec![0; n];
                    for (m, q) in remaining.iter().zip(q) {
                        full[*m] = q;
                    }
                    full
                }
            };
            let mut split: Vec<Vec<usize>> = vec![Vec::new(); n];
            for (slot, member) in slots.iter().zip(interleave(&quotas)) {
                prefs[*slot].push(member);
                split[member].push(*slot);
            }
            for (member, slots) in split.into_iter().enumerate() {
                if !slots.is_empty() {
                    let mut chosen = chosen.clone();
                    chosen.push(member);
                    next.push((slots, chosen));
                }
            }
        }
        groups = next;
    }
    prefs
}

/// How the slots of `down` are shared out when it is down: each other member gets what it
/// lacks to reach its exact share of the whole table without `down`. Rounding can leave a
/// member one over its share already; the remaining slots then go by weight.
fn second_choices(weights: &[u32], first: &[usize], down: usize, owned: usize) -> Vec<usize> {
    let without: Vec<u32> = weights
        .iter()
        .enumerate()
        .map(|(m, w)| if m == down { 0 } else { *w })
        .collect();
    let target = apportion(N, &without);
    let mut quotas: Vec<usize> = (0..weights.len())
        .map(|m| {
            if m == down {
                0
            } else {
                target[m].saturating_sub(first[m])
            }
        })
        .collect();
    let mut given: usize = quotas.iter().sum();
    while given > owned {
        // Only possible when rounding put someone one over: take back from the largest.
        let m = (0..quotas.len())
            .max_by_key(|m| quotas[*m])
            .expect("members");
        quotas[m] -= 1;
        given -= 1;
    }
    if given < owned {
        let rest = apportion(owned - given, &without);
        for (q, r) in quotas.iter_mut().zip(rest) {
            *q += r;
        }
    }
    quotas
}

/// Splits `total` by `weights` with the largest-remainder method; ties go to the earlier
/// member. Every share is the exact one rounded down or up.
pub fn apportion(total: usize, weights: &[u32]) -> Vec<usize> {
    let sum: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    if sum == 0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<(usize, u64)> = weights
        .iter()
        .map(|w| {
            let scaled = total as u64 * u64::from(*w);
            ((scaled / sum) as usize, scaled % sum)
        })
        .collect();
    let mut shares: Vec<usize> = exact.iter().map(|(q, _)| *q).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|a, b| exact[*b].1.cmp(&exact[*a].1).then(a.cmp(b)));
    let left = total - shares.iter().sum::<usize>();
    for m in order.into_iter().take(left) {
        shares[m] += 1;
    }
    shares
}

/// The members in slot order, each appearing its quota times, spread evenly: at every point
/// each member has had about its share of the slots so far.
fn interleave(quotas: &[usize]) -> Vec<usize> {
    let total: usize = quotas.iter().sum();
    let mut given = vec![0usize; quotas.len()];
    (0..total)
        .map(|j| {
            let m = (0..quotas.len())
                .filter(|m| given[*m] < quotas[*m])
                .max_by(|a, b| {
                    let lag = |m: usize| (quotas[m] * (j + 1)) as i64 - (given[m] * total) as i64;
                    lag(*a).cmp(&lag(*b)).then(b.cmp(a))
                })
                .expect("quotas add up to the total");
            given[m] += 1;
            m
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(owners: &[usize; N], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for o in owners {
            c[*o] += 1;
        }
        c
    }

    /// Whether every up member's count is its exact share rounded down or up.
    fn exact(counts: &[usize], weights: &[u32], up: &[bool]) -> bool {
        let sum: f64 = weights
            .iter()
            .zip(up)
            .filter(|(_, u)| **u)
            .map(|(w, _)| f64::from(*w))
            .sum();
        counts.iter().zip(weights).zip(up).all(|((c, w), u)| {
            let ideal = if *u {
                N as f64 * f64::from(*w) / sum
            } else {
                0.0
            };
            (*c as f64 - ideal).abs() < 1.0
        })
    }

    /// A small deterministic generator for the property tests.
    struct Lcg(u64);
    impl Lcg {
        fn below(&mut self, n: u32) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) % u64::from(n)) as u32
        }
    }

    #[test]
    fn equal_weights_split_exactly() {
        assert_eq!(
            counts(&owners(&[1, 1], &[true, true]).unwrap(), 2),
            [128, 128]
        );
        let three = counts(&owners(&[1, 1, 1], &[true; 3]).unwrap(), 3);
        assert!(three.iter().all(|c| (85..=86).contains(c)), "{three:?}");
        assert_eq!(
            counts(&owners(&[3, 1], &[true, true]).unwrap(), 2),
            [192, 64]
        );
        assert!(owners(&[1, 1], &[false, false]).is_none());
    }

    #[test]
    fn shares_are_exact_with_all_up_and_with_any_one_down() {
        let mut rng = Lcg(7);
        for _ in 0..300 {
            let n = 2 + rng.below(6) as usize;
            let weights: Vec<u32> = (0..n).map(|_| 1 + rng.below(64)).collect();
            let all = vec![true; n];
            let full = owners(&weights, &all).unwrap();
            assert!(exact(&counts(&full, n), &weights, &all), "{weights:?}");
            for down in 0..n {
                let mut up = all.clone();
                up[down] = false;
                let table = owners(&weights, &up).unwrap();
                assert!(
                    exact(&counts(&table, n), &weights, &up),
                    "{weights:?} with {down} down: {:?}",
                    counts(&table, n)
                );
            }
        }
    }

    #[test]
    fn only_a_leaving_members_slots_move_and_its_return_restores_the_table() {
        let mut rng = Lcg(11);
        for _ in 0..200 {
            let n = 2 + rng.below(5) as usize;
            let weights: Vec<u32> = (0..n).map(|_| 1 + rng.below(8)).collect();
            let mut up: Vec<bool> = (0..n).map(|_| rng.below(3) != 0).collect();
            up[rng.below(n as u32) as usize] = true;
            let Some(before) = owners(&weights, &up) else {
                continue;
            };
            let leaving = (0..n).find(|m| up[*m]).unwrap();
            if up.iter().filter(|u| **u).count() < 2 {
                continue;
            }
            let mut after_up = up.clone();
            after_up[leaving] = false;
            let after = owners(&weights, &after_up).unwrap();
            for (b, a) in before.iter().zip(&after) {
                if *b != leaving {
                    assert_eq!(b, a, "a slot of a member that stayed moved");
                }
                assert_ne!(*a, leaving);
            }
            assert_eq!(
                owners(&weights, &up).unwrap(),
                before,
                "the return restores it"
            );
        }
    }

    #[test]
    fn with_two_down_the_rest_stay_close_to_their_shares() {
        let weights = [1, 2, 3, 4, 5];
        for a in 0..5 {
            for b in a + 1..5 {
                let mut up = [true; 5];
                up[a] = false;
                up[b] = false;
                let c = counts(&owners(&weights, &up).unwrap(), 5);
                let sum: u32 = (0..5).filter(|m| up[*m]).map(|m| weights[m]).sum();
                for m in (0..5).filter(|m| up[*m]) {
                    let ideal = N as f64 * f64::from(weights[m]) / f64::from(sum);
                    assert!((c[m] as f64 - ideal).abs() <= 3.0, "{c:?} {a} {b} down");
                }
            }
        }
    }

    #[test]
    fn members_are_interleaved_not_in_runs() {
        let table = owners(&[1, 1], &[true, true]).unwrap();
        let longest = table
            .chunk_by(|a, b| a == b)
            .map(<[usize]>::len)
            .max()
            .unwrap();
        assert!(longest <= 2, "runs of {longest}");
    }
}
