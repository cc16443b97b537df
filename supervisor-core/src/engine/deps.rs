//! The dependency graph: `requires` and `after` between services.
//!
//! A service names only services added before it, so the graph an engine
//! holds has no cycle by construction, except through a service replaced
//! by a reload: that is checked when it comes back.

use super::Engine;
use crate::model::{InvalidService, Kind, Service};

impl Engine {
    /// The names in `svc.requires` and `svc.after` are services of this
    /// engine that can be waited for (daemons and external services), and
    /// they make no cycle through `svc`.
    pub(super) fn check_dependencies(&self, svc: &Service) -> Result<(), InvalidService> {
        for (field, list) in [("requires", &svc.requires), ("after", &svc.after)] {
            for dep in list {
                let Some(def) = self.definition(dep) else {
                    return Err(InvalidService::new(&svc.name, field, format!("no service {dep:?} (add it first)")));
                };
                if matches!(def.kind, Kind::Task(_)) {
                    let problem =
                        format!("{dep:?} is a task, which is never ready: wait for daemons or external services");
                    return Err(InvalidService::new(&svc.name, field, problem));
                }
            }
        }
        if let Some(cycle) = self.cycle_through(svc) {
            let field = if svc.requires.contains(&cycle[1]) { "requires" } else { "after" };
            return Err(InvalidService::new(&svc.name, field, format!("a cycle: {}", cycle.join(" -> "))));
        }
        Ok(())
    }

    /// The definition of service `name` that holds from now on: its
    /// replacement when a reload is replacing it, none when it is being
    /// removed.
    fn definition(&self, name: &str) -> Option<&Service> {
        let &i = self.by_name.get(name)?;
        if let Some(p) = self.reload.pending.iter().find(|p| p.idx == i) {
            return Some(&p.svc);
        }
        (!self.slots[i].retired).then_some(&self.slots[i].svc)
    }

    /// A path from `svc` through its dependencies back to it, as names
    /// (the first and last are its own), when there is one.
    fn cycle_through(&self, svc: &Service) -> Option<Vec<String>> {
        let deps_of = |name: &str| -> Vec<String> {
            if name == svc.name {
                return svc.requires.iter().chain(&svc.after).cloned().collect();
            }
            self.definition(name).map_or_else(Vec::new, |s| s.requires.iter().chain(&s.after).cloned().collect())
        };
        // Depth first, with the path kept; each name is explored once.
        let mut seen = std::collections::HashSet::new();
        let mut path = vec![svc.name.clone()];
        let mut stack = vec![deps_of(&svc.name).into_iter()];
        while let Some(next) = stack.last_mut().map(Iterator::next) {
            match next {
                None => {
                    stack.pop();
                    path.pop();
                }
                Some(dep) if dep == svc.name => {
                    path.push(dep);
                    return Some(path);
                }
                Some(dep) => {
                    if seen.insert(dep.clone()) {
                        stack.push(deps_of(&dep).into_iter());
                        path.push(dep);
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{Command, Expected, Kind, Service, TaskSpec};
    use crate::{Engine, EngineError};

    fn svc(name: &str, requires: &[&str], after: &[&str]) -> Service {
        let mut s = Service::new(name, Command::argv(["true"]));
        s.expected = Expected::Stopped;
        s.requires = requires.iter().map(ToString::to_string).collect();
        s.after = after.iter().map(ToString::to_string).collect();
        s
    }

    fn problem(r: Result<impl std::fmt::Debug, EngineError>) -> String {
        match r {
            Err(EngineError::Invalid(e)) => format!("{}: {}", e.field, e.problem),
            other => panic!("expected an invalid service, got {other:?}"),
        }
    }

    #[test]
    fn dependencies_name_earlier_services_that_can_be_ready_and_make_no_cycle() {
        let mut e = Engine::new("deps").unwrap();
        assert!(problem(e.add_service(svc("web", &["db"], &[]))).contains("no service \"db\""));
        e.add_service(svc("db", &[], &[])).unwrap();
        let mut task = svc("backup", &["db"], &[]);
        task.kind = Kind::Task(Box::new(TaskSpec::every(std::time::Duration::from_secs(60))));
        e.add_service(task).unwrap();
        assert!(problem(e.add_service(svc("x", &[], &["backup"]))).contains("is a task"));
        e.add_service(svc("web", &["db"], &[])).unwrap();
        e.add_service(svc("api", &[], &["web"])).unwrap();
        // A reload that makes db wait for api closes a cycle.
        let p = problem(e.replace_service(svc("db", &["api"], &[])));
        assert_eq!(p, "requires: a cycle: db -> api -> web -> db");
        assert!(problem(e.add_service(svc("self", &["self"], &[]))).contains("itself"));
    }
}
