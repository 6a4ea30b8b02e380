//! The step DAG: edges "A before B", a deterministic topological order, and cycle detection.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeKind {
    /// B needs A: when A fails in the same run, B is skipped.
    Requires,
    /// B only runs after A when both run; A's failure does not stop B.
    Order,
    /// B runs only when A ran and failed (`on-failure A`); otherwise B is left out, silently.
    OnFailure,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub kind: EdgeKind,
}

#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub len: usize,
    pub edges: Vec<Edge>,
}

impl Graph {
    pub fn new(len: usize) -> Graph {
        Graph {
            len,
            edges: Vec::new(),
        }
    }

    pub fn add(&mut self, from: usize, to: usize, kind: EdgeKind) {
        if from == to {
            return;
        }
        if let Some(e) = self.edges.iter_mut().find(|e| e.from == from && e.to == to) {
            // An explicit requirement is stronger than an implicit ordering.
            if kind == EdgeKind::Requires {
                e.kind = kind;
            }
            return;
        }
        self.edges.push(Edge { from, to, kind });
    }

    pub fn predecessors(&self, node: usize) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.to == node)
    }

    /// Kahn's algorithm, always taking the lowest ready index, so the order is stable.
    /// On a cycle, returns the nodes of one cycle in order.
    pub fn order(&self) -> Result<Vec<usize>, Vec<usize>> {
        let mut indegree = vec![0usize; self.len];
        let mut out: Vec<Vec<usize>> = vec![Vec::new(); self.len];
        for e in &self.edges {
            indegree[e.to] += 1;
            out[e.from].push(e.to);
        }
        let mut ready: std::collections::BTreeSet<usize> =
            (0..self.len).filter(|&n| indegree[n] == 0).collect();
        let mut order = Vec::with_capacity(self.len);
        while let Some(n) = ready.pop_first() {
            order.push(n);
            for &m in &out[n] {
                indegree[m] -= 1;
                if indegree[m] == 0 {
                    ready.insert(m);
                }
            }
        }
        if order.len() == self.len {
            Ok(order)
        } else {
            Err(self.find_cycle(&indegree, &out))
        }
    }

    /// Walks from a node left with unmet predecessors until a node repeats.
    fn find_cycle(&self, indegree: &[usize], out: &[Vec<usize>]) -> Vec<usize> {
        let stuck: Vec<bool> = indegree.iter().map(|&d| d > 0).collect();
        // Follow predecessors that are themselves stuck: every stuck node has one.
        let mut pred_of = vec![None; self.len];
        for (from, tos) in out.iter().enumerate() {
            for &to in tos {
                if stuck[from] && stuck[to] && pred_of[to].is_none() {
                    pred_of[to] = Some(from);
                }
            }
        }
        let Some(start) = (0..self.len).find(|&n| stuck[n]) else {
            return Vec::new();
        };
        let mut seen = vec![usize::MAX; self.len];
        let mut path = Vec::new();
        let mut n = start;
        while seen[n] == usize::MAX {
            seen[n] = path.len();
            path.push(n);
            match pred_of[n] {
                Some(p) => n = p,
                None => return path,
            }
        }
        let mut cycle = path[seen[n]..].to_vec();
        // The walk went backwards along edges; present it forwards, starting at the lowest index.
        cycle.reverse();
        let min = cycle
            .iter()
            .enumerate()
            .min_by_key(|(_, v)| **v)
            .map_or(0, |(i, _)| i);
        cycle.rotate_left(min);
        cycle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn graph(len: usize, edges: &[(usize, usize)]) -> Graph {
        let mut g = Graph::new(len);
        for &(a, b) in edges {
            g.add(a, b, EdgeKind::Requires);
        }
        g
    }

    #[test]
    fn orders_a_chain_and_reports_a_cycle_in_order() {
        assert_eq!(graph(3, &[(2, 1), (1, 0)]).order().unwrap(), vec![2, 1, 0]);
        assert_eq!(
            graph(4, &[(0, 1), (1, 2), (2, 3), (3, 1)])
                .order()
                .unwrap_err(),
            vec![1, 2, 3]
        );
    }

    proptest! {
        #[test]
        fn random_dags_order_respects_every_edge(
            len in 1usize..40,
            raw in proptest::collection::vec((0usize..40, 0usize..40), 0..120),
        ) {
            // Edges only from a lower to a higher index of a random permutation: always a DAG.
            let edges: Vec<(usize, usize)> = raw
                .into_iter()
                .map(|(a, b)| (a % len, b % len))
                .filter(|(a, b)| a != b)
                .map(|(a, b)| if (a * 7919) % len < (b * 7919) % len || ((a * 7919) % len == (b * 7919) % len && a < b) { (a, b) } else { (b, a) })
                .collect();
            let g = graph(len, &edges);
            let order = g.order().expect("a DAG has an order");
            prop_assert_eq!(order.len(), len);
            let pos: Vec<usize> = {
                let mut p = vec![0; len];
                for (i, n) in order.iter().enumerate() { p[*n] = i; }
                p
            };
            for (a, b) in edges {
                prop_assert!(pos[a] < pos[b], "edge {}->{} violated", a, b);
            }
        }

        #[test]
        fn random_cycles_are_found(
            len in 2usize..30,
            cycle_len in 2usize..10,
            extra in proptest::collection::vec((0usize..30, 0usize..30), 0..40),
            seed in 0usize..1000,
        ) {
            let cycle_len = cycle_len.min(len);
            let members: Vec<usize> = (0..cycle_len).map(|i| (seed + i * 3) % len).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
            prop_assume!(members.len() >= 2);
            let mut edges: Vec<(usize, usize)> = members.windows(2).map(|w| (w[0], w[1])).collect();
            edges.push((members[members.len() - 1], members[0]));
            edges.extend(extra.into_iter().map(|(a, b)| (a % len, b % len)).filter(|(a, b)| a != b));
            let g = graph(len, &edges);
            let cycle = g.order().expect_err("a graph with a cycle has no order");
            prop_assert!(cycle.len() >= 2);
            // What is reported really is a cycle of the graph.
            for i in 0..cycle.len() {
                let (a, b) = (cycle[i], cycle[(i + 1) % cycle.len()]);
                prop_assert!(g.edges.iter().any(|e| e.from == a && e.to == b), "{}->{} is not an edge", a, b);
            }
        }
    }
}
