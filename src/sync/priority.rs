//! Priorities: when two sources define the same flag key, the higher priority wins. Each
//! origin of sources has its own band, so a source added at run time never outranks or
//! underlies the wrong ones; within the configuration object's band, priorities are planned
//! so that an unchanged source keeps running untouched.

/// The band of the command line and config file sources: their position (later wins).
pub(super) const STATIC_BASE: usize = 0;
/// The first priority of the configuration object's band (above every static source).
pub(super) const DYNAMIC_BASE: usize = 1 << 20;
/// The first priority of the inline (SQS-delivered) band (above everything else).
pub(super) const INLINE_BASE: usize = 1 << 30;
/// Where SQS queues are listed (they hold no flags; last in stats).
pub(super) const QUEUE: usize = usize::MAX;
/// Spacing between the priorities of configuration-object sources, leaving room to insert.
const STEP: usize = 1 << 16;

use super::provider::SourceConfig;

/// What happens to one source the configuration object lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    /// The running source with this priority stays.
    Keep(usize),
    /// A new source starts with this priority.
    Start(usize),
}

/// Priorities for the `wanted` sources (in order, strictly increasing) that keep as many
/// `running` (config, priority) sources as possible where they are; new ones go into the
/// gaps. If a gap is exhausted, everything is renumbered (and restarted).
pub(super) fn plan_priorities(
    running: &[(SourceConfig, usize)],
    wanted: &[SourceConfig],
) -> Vec<Slot> {
    let mut used = vec![false; running.len()];
    let mut kept: Vec<Option<usize>> = vec![None; wanted.len()];
    let mut last = DYNAMIC_BASE;
    for (i, config) in wanted.iter().enumerate() {
        let found = running
            .iter()
            .enumerate()
            .position(|(j, (c, p))| !used[j] && c == config && *p > last);
        if let Some(j) = found {
            used[j] = true;
            kept[i] = Some(running[j].1);
            last = running[j].1;
        }
    }
    let mut plan = Vec::with_capacity(wanted.len());
    let mut lower = DYNAMIC_BASE;
    let mut i = 0;
    while i < wanted.len() {
        if let Some(priority) = kept[i] {
            plan.push(Slot::Keep(priority));
            lower = priority;
            i += 1;
            continue;
        }
        let run = kept[i..].iter().take_while(|k| k.is_none()).count();
        let upper = kept[i + run..]
            .iter()
            .flatten()
            .next()
            .copied()
            .unwrap_or(INLINE_BASE);
        let step = if upper == INLINE_BASE {
            STEP
        } else {
            (upper - lower) / (run + 1)
        };
        if step == 0 || lower + step * run >= upper {
            // No room left between neighbours: renumber everything.
            return (1..=wanted.len())
                .map(|n| Slot::Start(DYNAMIC_BASE + n * STEP))
                .collect();
        }
        for n in 1..=run {
            plan.push(Slot::Start(lower + n * step));
        }
        lower += run * step;
        i += run;
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::Provider;

    fn source(name: &str) -> SourceConfig {
        SourceConfig {
            uri: format!("s3://b/{name}.json"),
            provider: Provider::S3,
            interval: None,
            remote: Default::default(),
        }
    }

    fn priorities(plan: &[Slot]) -> Vec<usize> {
        plan.iter()
            .map(|s| match s {
                Slot::Keep(p) | Slot::Start(p) => *p,
            })
            .collect()
    }

    #[test]
    fn removing_or_appending_keeps_the_others_running() {
        let (a, b, c) = (source("a"), source("b"), source("c"));
        let first = plan_priorities(&[], &[a.clone(), b.clone()]);
        let p = priorities(&first);
        assert!(matches!(first[..], [Slot::Start(_), Slot::Start(_)]));
        assert!(DYNAMIC_BASE < p[0] && p[0] < p[1]);
        let running = vec![(a.clone(), p[0]), (b.clone(), p[1])];
        assert_eq!(
            plan_priorities(&running, std::slice::from_ref(&b)),
            [Slot::Keep(p[1])]
        );
        let appended = plan_priorities(&running, &[a.clone(), b.clone(), c.clone()]);
        assert_eq!(appended[..2], [Slot::Keep(p[0]), Slot::Keep(p[1])]);
        assert!(matches!(appended[2], Slot::Start(q) if q > p[1]));
        let inserted = plan_priorities(&running, &[a.clone(), c.clone(), b.clone()]);
        assert!(matches!(inserted[1], Slot::Start(q) if p[0] < q && q < p[1]));
        let prepended = plan_priorities(&running, &[c, a.clone(), b.clone()]);
        assert!(matches!(prepended[0], Slot::Start(q) if DYNAMIC_BASE < q && q < p[0]));
        // Swapping two sources restarts one of them.
        let swapped = plan_priorities(&running, &[b, a]);
        let q = priorities(&swapped);
        assert!(q[0] < q[1]);
        assert_eq!(
            swapped
                .iter()
                .filter(|s| matches!(s, Slot::Keep(_)))
                .count(),
            1
        );
    }

    #[test]
    fn exhausted_gaps_renumber_everything() {
        let (a, b, c) = (source("a"), source("b"), source("c"));
        let running = vec![(a.clone(), DYNAMIC_BASE + 1), (b.clone(), DYNAMIC_BASE + 2)];
        let plan = plan_priorities(&running, &[a, c, b]);
        assert!(plan.iter().all(|s| matches!(s, Slot::Start(_))));
        let p = priorities(&plan);
        assert!(p[0] < p[1] && p[1] < p[2]);
    }
}
