//! `requires` and `after` across services: each name is a service of the
//! file that can be waited for (a daemon or an external service), the
//! names make no cycle, and the services are put in the order the engine
//! takes them in (each after the services it names).

use std::collections::{HashMap, HashSet};

use supervisor_core::Kind;
use toml::de::DeValue;

use super::check::{Diag, Raw};
use super::service::ServiceRead;

/// Reports the names of `requires` and `after` that are not services of
/// the file or are tasks, and one error per cycle (at the name that
/// closes it, following the file's order); then orders `services` so that
/// each comes after the services it names: a stable topological order, in
/// which a service named by an earlier one moves up to just before it, and
/// the others keep the file's order. `table` is the `service` table: a
/// name whose table could not be read is not reported again.
pub(super) fn check_and_order(diag: &mut Diag<'_>, table: Option<&Raw<'_>>, services: &mut Vec<ServiceRead>) {
    let declared: HashSet<&str> = match table.map(toml::Spanned::get_ref) {
        Some(DeValue::Table(t)) => t.keys().map(|k| k.get_ref().as_ref()).collect(),
        _ => HashSet::new(),
    };
    let index: HashMap<&str, usize> = services.iter().enumerate().map(|(i, r)| (r.service.name.as_str(), i)).collect();
    // The services each one waits for, with the entry that names them.
    let mut edges: Vec<Vec<(usize, usize)>> = vec![Vec::new(); services.len()];
    for (i, r) in services.iter().enumerate() {
        let name = r.service.name.as_str();
        for (d, dep) in r.readiness.deps.iter().enumerate() {
            let message = match index.get(dep.name.as_str()) {
                None if declared.contains(dep.name.as_str()) => continue,
                None => format!("no service named {:?}", dep.name),
                Some(&j) if matches!(services[j].service.kind, Kind::Task(_)) => format!(
                    "{:?} is a task, which is never ready: requires and after name daemons and external services",
                    dep.name
                ),
                Some(&j) => {
                    if !edges[i].iter().any(|&(k, _)| k == j) {
                        edges[i].push((j, d));
                    }
                    continue;
                }
            };
            diag.error(Some(dep.at.clone()), Some(name), Some(dep.key), message);
        }
    }
    // Depth first from each service in file order: a service is placed
    // once all it waits for are; an entry back to a service on the path
    // closes a cycle.
    const NEW: u8 = 0;
    const ON_PATH: u8 = 1;
    const PLACED: u8 = 2;
    let mut state = vec![NEW; services.len()];
    let mut order = Vec::with_capacity(services.len());
    for root in 0..services.len() {
        if state[root] != NEW {
            continue;
        }
        state[root] = ON_PATH;
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        while let Some((u, next)) = path.last_mut() {
            let u = *u;
            let Some(&(v, d)) = edges[u].get(*next) else {
                state[u] = PLACED;
                order.push(u);
                path.pop();
                continue;
            };
            *next += 1;
            match state[v] {
                NEW => {
                    state[v] = ON_PATH;
                    path.push((v, 0));
                }
                ON_PATH => {
                    let from = path.iter().position(|&(w, _)| w == v).unwrap_or(0);
                    let mut names: Vec<&str> =
                        path[from..].iter().map(|&(w, _)| services[w].service.name.as_str()).collect();
                    names.push(&services[v].service.name);
                    let message =
                        format!("a cycle: {} (each waits for the next, so none can start)", names.join(" -> "));
                    let dep = &services[u].readiness.deps[d];
                    diag.error(Some(dep.at.clone()), Some(&services[u].service.name), Some(dep.key), message);
                }
                _ => {}
            }
        }
    }
    let mut slots: Vec<Option<ServiceRead>> = services.drain(..).map(Some).collect();
    services.extend(order.into_iter().filter_map(|i| slots[i].take()));
}
